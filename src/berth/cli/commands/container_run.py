"""`berth run` and `berth create`: flags -> create body (runopts), then create/attach/start/wait."""

from __future__ import annotations

import dataclasses
import io
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from berth.cli.common import GO_BOOL, client
from berth.cli.errors import Failure, daemon_error
from berth.cli.runflags import RunFlags, check_platform, client_warnings
from berth.cli.runopts import OptionError, RunOptions, create_body, image_with_tag, start_error_status
from berth.client.errors import ClientError

F = TypeVar("F", bound=Callable[..., Any])

# Docker stops parsing flags at the image name: everything after it is the container's command.
_SETTINGS = {"allow_interspersed_args": False, "help_option_names": ["--help"]}

_PULL_CHOICES = ("always", "missing", "never")


class _FlagsCommand(click.Command):
    """pflag lets a boolean flag take a value (`--rm=false`, `--sig-proxy=false`); click does not,
    so such flags are rewritten before click parses them."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _go_bool_flags(self, args))


def _go_bool_flags(cmd: click.Command, args: list[str]) -> list[str]:
    flags: set[str] = set()
    valued: set[str] = set()
    for param in cmd.params:
        if isinstance(param, click.Option):
            (flags if param.is_flag else valued).update(param.opts)
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--" or arg == "-" or not arg.startswith("-"):
            return out + args[i:]  # the image name: the container's command follows, untouched
        name, sep, value = arg.partition("=")
        if name == "--sig-proxy" and not sep:
            out.append("--sig-proxy=true")  # a bare bool flag takes no separate value
        elif sep and name in flags:
            low = value.lower()
            if low not in ("1", "t", "true", "0", "f", "false"):
                raise Failure(f'invalid argument "{value}" for "{name}" flag: strconv.ParseBool: '
                              f'parsing "{value}": invalid syntax', 125)
            if low in ("1", "t", "true"):
                out.append(name)
        else:
            out.append(arg)
            if arg.startswith("--"):
                takes_next = not sep and name in valued
            else:  # a short cluster such as -it or -eKEY=V: the first valued letter takes the rest
                letters = arg[1:]
                valued_at = next((j for j, ch in enumerate(letters) if f"-{ch}" in valued), None)
                takes_next = valued_at == len(letters) - 1
            if takes_next and i + 1 < len(args):
                i += 1
                out.append(args[i])
        i += 1
    return out


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
        *_resource_and_security_options(),
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


def _resource_and_security_options() -> list[Callable[[F], F]]:
    """The flags runflags maps; values stay strings so a bad one gets docker's message."""
    return [
        click.option("-m", "--memory", help="Memory limit"),
        click.option("--memory-swap", help="Swap limit equal to memory plus swap: '-1' to enable unlimited swap"),
        click.option("--memory-reservation", help="Memory soft limit"),
        click.option("--memory-swappiness", help="Tune container memory swappiness (0 to 100) (default -1)"),
        click.option("--kernel-memory", help="Kernel memory limit (deprecated: accepted, not applied)"),
        click.option("--oom-kill-disable", is_flag=True, help="Disable OOM Killer"),
        click.option("--oom-score-adj", help="Tune host's OOM preferences (-1000 to 1000)"),
        click.option("-c", "--cpu-shares", help="CPU shares (relative weight)"),
        click.option("--cpu-period", help="Limit CPU CFS (Completely Fair Scheduler) period"),
        click.option("--cpu-quota", help="Limit CPU CFS (Completely Fair Scheduler) quota"),
        click.option("--cpuset-cpus", help="CPUs in which to allow execution (0-3, 0,1)"),
        click.option("--cpuset-mems", help="MEMs in which to allow execution (0-3, 0,1)"),
        click.option("--blkio-weight", help="Block IO (relative weight), between 10 and 1000, or 0 to disable"),
        click.option("--pids-limit", help="Tune container pids limit (set -1 for unlimited)"),
        click.option("--shm-size", help="Size of /dev/shm"),
        click.option("--ulimit", "ulimits", multiple=True, help="Ulimit options"),
        click.option("--cap-add", multiple=True, help="Add Linux capabilities"),
        click.option("--cap-drop", multiple=True, help="Drop Linux capabilities"),
        click.option("--security-opt", "security_opts", multiple=True, help="Security Options"),
        click.option("--read-only", is_flag=True, help="Mount the container's root filesystem as read only"),
        click.option("--group-add", multiple=True, help="Add additional groups to join"),
        click.option("--dns", multiple=True, help="Set custom DNS servers"),
        click.option("--dns-search", multiple=True, help="Set custom DNS search domains"),
        click.option("--dns-option", "--dns-opt", "dns_options", multiple=True, help="Set DNS options"),
        click.option("--add-host", "add_hosts", multiple=True, help="Add a custom host-to-IP mapping (host:ip)"),
        click.option("--domainname", help="Container NIS domain name"),
        click.option("--mac-address", help="Container MAC address (e.g., 92:d0:c6:0a:29:33)"),
        click.option("--ip6", help="IPv6 address (e.g., 2001:db8::33)"),
        click.option("--network-alias", "--net-alias", "network_aliases", multiple=True,
                     help="Add network-scoped alias for the container"),
        click.option("--link", "links", multiple=True, help="Add link to another container"),
        click.option("--pid", help="PID namespace to use"),
        click.option("--ipc", help="IPC mode to use"),
        click.option("--uts", help="UTS namespace to use"),
        click.option("--cgroupns", help="Cgroup namespace to use (host|private)"),
        click.option("--cgroup-parent", help="Optional parent cgroup for the container"),
        click.option("--runtime", help="Runtime to use for this container"),
        click.option("--isolation", help="Container isolation technology"),
        click.option("--cidfile", help="Write the container ID to the file"),
        click.option("--device-cgroup-rule", "device_cgroup_rules", multiple=True,
                     help="Add a rule to the cgroup allowed devices list"),
        click.option("--storage-opt", "storage_opts", multiple=True, help="Storage driver options for the container"),
        click.option("--label-file", multiple=True, type=click.Path(dir_okay=False),
                     help="Read in a line delimited file of labels"),
        click.option("--gpus", help="GPU devices to add to the container ('all' to pass all GPUs)"),
        click.option("--platform", help="Set platform if server is multi-platform capable"),
        click.option("--pull", default="missing", help='Pull image before creating ("always", "missing", "never")'),
        click.option("-q", "--quiet", is_flag=True, help="Suppress the pull output"),
    ]


def _read_lines(paths: tuple[str, ...]) -> list[str]:
    """The entries of --env-file / --label-file files: blank lines and comments skipped."""
    from berth.cli.runopts import env_file_entries

    lines: list[str] = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as fh:
                lines += env_file_entries(fh.read())
        except OSError as exc:
            raise Failure(f"open {path}: {exc.strerror.lower() if exc.strerror else exc}", 125) from exc
    return lines


@dataclasses.dataclass
class _ClientOptions:
    """Flags that shape what the CLI does around the create request, not the request body."""

    pull: str = "missing"
    quiet: bool = False
    platform: str | None = None
    gpus: str | None = None


def _options(image: str, command: tuple[str, ...], kw: dict[str, Any], detach: bool) -> RunOptions:
    env_file_lines = _read_lines(kw.pop("env_file", ()))
    label_file_lines = _read_lines(kw.pop("label_file", ()))
    values: dict[str, Any] = {f.name: kw.pop(f.name) for f in dataclasses.fields(RunFlags)}
    for key, value in values.items():
        if isinstance(value, tuple):
            values[key] = list(value)
    flags = RunFlags(**values)
    return RunOptions(
        image=image,
        command=list(command),
        detach=detach,
        env=list(kw.pop("env")),
        env_file_lines=env_file_lines,
        labels=label_file_lines + list(kw.pop("labels")),
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
        flags=flags,
        **kw,
    )


def _client_options(kw: dict[str, Any]) -> _ClientOptions:
    return _ClientOptions(**{f.name: kw.pop(f.name) for f in dataclasses.fields(_ClientOptions)})


def _create(opts: RunOptions, prefix: str, extra: _ClientOptions) -> str:
    """Create the container, pulling its image first or when missing as --pull says; returns its ID."""
    status = 125 if prefix else 1  # docker run reports any failure to create as 125
    if extra.pull not in (*_PULL_CHOICES, ""):
        raise Failure(f"berth: invalid pull option: '{extra.pull}': must be one of \"always\", \"missing\" "
                      'or "never"', 125)
    try:
        body = create_body(opts, os.environ)
    except OptionError as exc:
        # as docker: a value its flag's type rejects (pflag's wording) is shown bare, others prefixed
        flag_type_error = str(exc).startswith('invalid argument "')
        raise Failure(str(exc) if flag_type_error else f"berth: {exc}", 125) from exc
    if extra.gpus is not None:
        raise Failure('berth: --gpus: could not select device driver "" with capabilities: [[gpu]] '
                      "(berth has no GPU support)", 125)
    if extra.platform:
        try:
            check_platform(extra.platform)
        except OptionError as exc:
            raise Failure(f"{prefix}{exc}", status) from None
    cidfile = opts.flags.cidfile
    if cidfile:
        try:
            open(cidfile, "x").close()  # noqa: SIM115 - claimed now, removed again if create fails
        except FileExistsError:
            raise Failure(f"{prefix}container ID file found, make sure the other container isn't running or "
                          f"delete {cidfile}", status) from None
        except OSError as exc:
            raise Failure(f"{prefix}failed to create the container ID file: {exc}", status) from None
    written = False
    try:
        if extra.pull == "always":
            _pull(opts.image, extra, prefix, status)
        created = _create_request(body, opts, prefix, status, extra)
        if cidfile:
            with open(cidfile, "w") as fh:
                fh.write(str(created["Id"]))
            written = True
    finally:
        if cidfile and not written:
            os.unlink(cidfile)
    warnings = list(created.get("Warnings") or [])
    for warning in warnings + client_warnings(opts.flags, warnings):
        print(f"WARNING: {warning}", file=sys.stderr)
    return str(created["Id"])


def _create_request(body: dict[str, Any], opts: RunOptions, prefix: str, status: int,
                    extra: _ClientOptions) -> dict[str, Any]:
    api = client()
    try:
        return api.containers.create(body, name=opts.name, platform=extra.platform)
    except ClientError as exc:
        if not (exc.status == 404 and "image" in exc.message.lower() and extra.pull in ("missing", "")):
            raise Failure(f"{prefix}{daemon_error(exc)}", status) from exc
    if not extra.quiet:
        print(f"Unable to find image '{image_with_tag(opts.image)}' locally", file=sys.stderr)
    _pull(opts.image, extra, prefix, status)
    try:
        return api.containers.create(body, name=opts.name, platform=extra.platform)
    except ClientError as exc:
        raise Failure(f"{prefix}{daemon_error(exc)}", status) from exc


def _pull(image: str, extra: _ClientOptions, prefix: str, status: int) -> None:
    """Pull as `docker run` does: progress on stderr (nothing with -q), failures as run's errors."""
    from berth.cli import dockerconfig, jsonprogress
    from berth.client import distribution
    from berth.common import reference

    try:
        ref = reference.parse(image).with_default_tag() if "@" not in image else reference.parse(image)
    except reference.InvalidReference as exc:
        raise Failure(f"{prefix}{exc}", status) from None
    out = io.StringIO() if extra.quiet else sys.stderr
    try:
        resp = distribution.pull(client(), ref.name, ref.digest or ref.tag, extra.platform,
                                 dockerconfig.registry_auth_header(ref.domain))
        try:
            jsonprogress.show(resp, out, out.isatty())
        finally:
            resp.close()
    except ClientError as exc:
        raise Failure(f"{prefix}{daemon_error(exc)}", status) from exc
    except Failure as exc:
        raise Failure(f"{prefix}{exc.message or ''}", status) from exc


@click.command("create", cls=_FlagsCommand, context_settings=_SETTINGS, short_help="Create a new container")
@_container_options
def create(image: str, command: tuple[str, ...], **kw: Any) -> None:
    """Create a new container"""
    extra = _client_options(kw)
    opts = _options(image, command, kw, detach=False)  # docker create's body attaches as run's does
    click.echo(_create(opts, prefix="", extra=extra))


@click.command("run", cls=_FlagsCommand, context_settings=_SETTINGS,
               short_help="Create and run a new container from an image")
@click.option("-d", "--detach", is_flag=True, help="Run container in background and print container ID")
@click.option("--detach-keys", help="Override the key sequence for detaching a container")
@click.option("--sig-proxy", type=GO_BOOL, default="true", help="Proxy received signals to the process (default true)")
@_container_options
def run(image: str, command: tuple[str, ...], detach: bool, detach_keys: str | None, sig_proxy: bool,
        **kw: Any) -> None:
    """Create and run a new container from an image"""
    del sig_proxy  # accepted for docker's sake: berth run does not forward signals
    extra = _client_options(kw)
    opts = _options(image, command, kw, detach=detach)
    if opts.tty and opts.interactive and sys.stdin.isatty():
        raise Failure("berth: interactive TTY sessions (-it) are not supported yet", 125)
    if opts.interactive and opts.tty is False and opts.detach:
        pass  # -di keeps stdin open in the container without attaching: nothing to pump
    prefix = "berth: "
    cid = _create(opts, prefix, extra)
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
        detach_keys=detach_keys,
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
