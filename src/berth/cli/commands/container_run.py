"""`berth run` and `berth create`: flags -> create body (runopts), then create/attach/start/wait."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from berth.cli.common import client
from berth.cli.errors import Failure, daemon_error
from berth.cli.runopts import OptionError, RunOptions, create_body, image_with_tag, start_error_status
from berth.client.errors import ClientError

F = TypeVar("F", bound=Callable[..., Any])

# Docker stops parsing flags at the image name: everything after it is the container's command.
_SETTINGS = {"allow_interspersed_args": False, "help_option_names": ["--help"]}


def _container_options(fn: F) -> F:
    options = [
        click.option("--name", help="Assign a name to the container"),
        click.option("-e", "--env", multiple=True, help="Set environment variables"),
        click.option(
            "--env-file",
            multiple=True,
            type=click.Path(dir_okay=False),
            help="Read in a file of environment variables",
        ),
        click.option("-w", "--workdir", help="Working directory inside the container"),
        click.option("-u", "--user", help="Username or UID (format: <name|uid>[:<group|gid>])"),
        click.option("-h", "--hostname", help="Container host name"),
        click.option("-l", "--label", "labels", multiple=True, help="Set meta data on a container"),
        click.option("--entrypoint", help="Overwrite the default ENTRYPOINT of the image"),
        click.option("--network", "--net", "network", help="Connect a container to a network"),
        click.option("-p", "--publish", multiple=True, help="Publish a container's port(s) to the host"),
        click.option("-P", "--publish-all", is_flag=True, help="Publish all exposed ports to random ports"),
        click.option("--ip", help="IPv4 address (e.g., 172.30.100.104)"),
        click.option("--expose", multiple=True, help="Expose a port or a range of ports"),
        click.option("-v", "--volume", "volumes", multiple=True, help="Bind mount a volume"),
        click.option("--mount", "mounts", multiple=True, help="Attach a filesystem mount to the container"),
        click.option("--tmpfs", multiple=True, help="Mount a tmpfs directory"),
        click.option("--volumes-from", multiple=True, help="Mount volumes from the specified container(s)"),
        click.option("--restart", help="Restart policy to apply when a container exits"),
        click.option("--privileged", is_flag=True, help="Give extended privileges to this container"),
        click.option("--init", is_flag=True, help="Run an init inside the container"),
        click.option("--cpus", help="Number of CPUs"),
        click.option("--device", "devices", multiple=True, help="Add a host device to the container"),
        click.option("--sysctl", "sysctls", multiple=True, help="Sysctl options"),
        click.option("--userns", help="User namespace to use"),
        click.option("--health-cmd", help="Command to run to check health"),
        click.option("--health-interval", help="Time between running the check (ms|s|m|h) (default 0s)"),
        click.option("--health-retries", type=int, default=0, help="Consecutive failures needed to report unhealthy"),
        click.option("--health-start-interval", help="Time between running the check during the start period "
                     "(ms|s|m|h) (default 0s)"),
        click.option("--health-start-period", help="Start period for the container to initialize before starting "
                     "health-retries countdown (ms|s|m|h) (default 0s)"),
        click.option("--health-timeout", help="Maximum time to allow one check to run (ms|s|m|h) (default 0s)"),
        click.option("--no-healthcheck", is_flag=True, help="Disable any container-specified HEALTHCHECK"),
        click.option("--log-driver", help="Logging driver for the container"),
        click.option("--log-opt", "log_opts", multiple=True, help="Log driver options"),
        click.option("--stop-signal", help="Signal to stop the container"),
        click.option("--stop-timeout", type=int, help="Timeout (in seconds) to stop a container"),
        click.option(
            "--rm", is_flag=True, help="Automatically remove the container and its volumes when it exits"
        ),
        click.option("-i", "--interactive", is_flag=True, help="Keep STDIN open even if not attached"),
        click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY"),
        click.option(
            "-a",
            "--attach",
            "attach_streams",
            multiple=True,
            type=click.Choice(["stdin", "stdout", "stderr"], case_sensitive=False),
            help="Attach to STDIN, STDOUT or STDERR",
        ),
        click.argument("image"),
        click.argument("command", nargs=-1, type=click.UNPROCESSED),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _options(image: str, command: tuple[str, ...], kw: dict[str, Any], detach: bool) -> RunOptions:
    env_file_lines: list[str] = []
    from berth.cli.runopts import env_file_entries

    for path in kw.pop("env_file", ()):
        try:
            with open(path, encoding="utf-8") as fh:
                env_file_lines += env_file_entries(fh.read())
        except OSError as exc:
            raise Failure(f"open {path}: {exc.strerror.lower() if exc.strerror else exc}", 125) from exc
    return RunOptions(
        image=image,
        command=list(command),
        detach=detach,
        env=list(kw.pop("env")),
        env_file_lines=env_file_lines,
        labels=list(kw.pop("labels")),
        publish=list(kw.pop("publish")),
        expose=list(kw.pop("expose")),
        volumes=list(kw.pop("volumes")),
        mounts=list(kw.pop("mounts")),
        tmpfs=list(kw.pop("tmpfs")),
        volumes_from=list(kw.pop("volumes_from")),
        devices=list(kw.pop("devices")),
        sysctls=list(kw.pop("sysctls")),
        attach_streams=[s.lower() for s in kw.pop("attach_streams")],
        log_opts=list(kw.pop("log_opts")),
        **kw,
    )


def _create(opts: RunOptions, prefix: str) -> str:
    """Create the container; returns its ID. Prints docker's messages for a missing image."""
    try:
        body = create_body(opts, os.environ)
    except OptionError as exc:
        raise Failure(f"{prefix}{exc}", 125) from exc
    api = client()
    try:
        created = api.containers.create(body, name=opts.name)
    except ClientError as exc:
        if exc.status == 404 and "image" in exc.message.lower():
            # berth cannot pull yet: docker would try here, so say what docker says first.
            print(f"Unable to find image '{image_with_tag(opts.image)}' locally", file=sys.stderr)
        raise Failure(f"{prefix}{daemon_error(exc)}", 125 if prefix else 1) from exc
    for warning in created.get("Warnings") or []:
        print(f"WARNING: {warning}", file=sys.stderr)
    return str(created["Id"])


@click.command("create", context_settings=_SETTINGS, short_help="Create a new container")
@_container_options
def create(image: str, command: tuple[str, ...], **kw: Any) -> None:
    """Create a new container"""
    opts = _options(image, command, kw, detach=True)
    click.echo(_create(opts, prefix=""))


@click.command("run", context_settings=_SETTINGS, short_help="Create and run a new container from an image")
@click.option("-d", "--detach", is_flag=True, help="Run container in background and print container ID")
@_container_options
def run(image: str, command: tuple[str, ...], detach: bool, **kw: Any) -> None:
    """Create and run a new container from an image"""
    opts = _options(image, command, kw, detach=detach)
    if opts.tty and opts.interactive and sys.stdin.isatty():
        raise Failure("berth: interactive TTY sessions (-it) are not supported yet", 125)
    if opts.interactive and opts.tty is False and opts.detach:
        pass  # -di keeps stdin open in the container without attaching: nothing to pump
    prefix = "berth: "
    cid = _create(opts, prefix)
    api = client()
    if detach:
        _start(cid, opts, prefix)
        click.echo(cid)
        return
    from berth.cli.streams import copy_output, pump_stdin
    from berth.client.stream import SocketReader

    # Register the wait first: a short-lived container could exit (and be removed) before we ask.
    wait_conn = api.containers.wait_send(cid, condition="removed" if opts.rm else "next-exit")
    want_stdin = opts.interactive and (not opts.attach_streams or "stdin" in opts.attach_streams)
    sock, buffered = api.containers.attach(
        cid,
        stdin=want_stdin,
        stdout=not opts.attach_streams or "stdout" in opts.attach_streams,
        stderr=not opts.attach_streams or "stderr" in opts.attach_streams,
    )
    try:
        _start(cid, opts, prefix)
        if want_stdin:
            pump_stdin(sock)
        copy_output(SocketReader(sock, buffered), tty=opts.tty)
    finally:
        sock.close()
    result = api.containers.wait_receive(wait_conn)
    error = (result.get("Error") or {}).get("Message")
    if error:
        print(f"{prefix}{error}", file=sys.stderr)
    status = int(result.get("StatusCode", 0))
    if status:
        raise Failure(None, status)


def _start(cid: str, opts: RunOptions, prefix: str) -> None:
    api = client()
    try:
        api.containers.start(cid)
    except ClientError as exc:
        if opts.rm:
            # The daemon removes an auto-remove container whose start failed; make sure of it.
            try:
                api.containers.remove(cid, force=True)
            except ClientError:
                pass
        raise Failure(f"{prefix}{daemon_error(exc)}", start_error_status(exc.message)) from exc
