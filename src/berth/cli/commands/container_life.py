"""Lifecycle commands that act on containers by name: start, stop, restart, kill, rm, wait, rename."""

from __future__ import annotations

import sys

import click

from berth.cli.common import client, fail_if, for_each
from berth.cli.errors import Failure, daemon_error
from berth.client.errors import ClientError


@click.command("start", short_help="Start one or more stopped containers")
@click.option("-a", "--attach", is_flag=True, help="Attach STDOUT/STDERR and forward signals")
@click.option("-i", "--interactive", is_flag=True, help="Attach container's STDIN")
@click.argument("containers", nargs=-1, required=True)
def start(attach: bool, interactive: bool, containers: tuple[str, ...]) -> None:
    """Start one or more stopped containers"""
    api = client()
    if attach or interactive:
        if len(containers) > 1:
            raise Failure("you cannot start and attach multiple containers at once", 1)
        _start_attached(containers[0], interactive)
        return
    failed = for_each(containers, api.containers.start)
    fail_if(failed, f"Error: failed to start containers: {', '.join(failed)}")


def _start_attached(name: str, interactive: bool) -> None:
    from berth.cli.streams import copy_output, pump_stdin
    from berth.client.stream import SocketReader

    api = client()
    info = api.containers.inspect(name)
    cid = info["Id"]
    tty = bool((info.get("Config") or {}).get("Tty"))
    wait_conn = api.containers.wait_send(cid, condition="next-exit")
    sock, buffered = api.containers.attach(cid, stdin=interactive)
    try:
        try:
            api.containers.start(cid)
        except ClientError as exc:
            raise Failure(daemon_error(exc), 1) from exc
        if interactive:
            pump_stdin(sock)
        copy_output(SocketReader(sock, buffered), tty=tty)
    finally:
        sock.close()
    status = int(api.containers.wait_receive(wait_conn).get("StatusCode", 0))
    if status:
        raise Failure(None, status)


@click.command("stop", short_help="Stop one or more running containers")
@click.option("-s", "--signal", help="Signal to send to the container")
@click.option("-t", "--time", "timeout", type=int, help="Seconds to wait before killing the container")
@click.argument("containers", nargs=-1, required=True)
def stop(signal: str | None, timeout: int | None, containers: tuple[str, ...]) -> None:
    """Stop one or more running containers"""
    api = client()
    fail_if(for_each(containers, lambda c: api.containers.stop(c, t=timeout, signal=signal)))


@click.command("restart", short_help="Restart one or more containers")
@click.option("-s", "--signal", help="Signal to send to the container")
@click.option("-t", "--time", "timeout", type=int, help="Seconds to wait before killing the container")
@click.argument("containers", nargs=-1, required=True)
def restart(signal: str | None, timeout: int | None, containers: tuple[str, ...]) -> None:
    """Restart one or more containers"""
    api = client()
    fail_if(for_each(containers, lambda c: api.containers.restart(c, t=timeout, signal=signal)))


@click.command("kill", short_help="Kill one or more running containers")
@click.option("-s", "--signal", help="Signal to send to the container")
@click.argument("containers", nargs=-1, required=True)
def kill(signal: str | None, containers: tuple[str, ...]) -> None:
    """Kill one or more running containers"""
    api = client()
    fail_if(for_each(containers, lambda c: api.containers.kill(c, signal=signal)))


@click.command("rm", short_help="Remove one or more containers")
@click.option("-f", "--force", is_flag=True, help="Force the removal of a running container (uses SIGKILL)")
@click.option("-l", "--link", is_flag=True, help="Remove the specified link")
@click.option("-v", "--volumes", is_flag=True, help="Remove anonymous volumes associated with the container")
@click.argument("containers", nargs=-1, required=True)
def rm(force: bool, link: bool, volumes: bool, containers: tuple[str, ...]) -> None:
    """Remove one or more containers"""
    api = client()
    fail_if(for_each(containers, lambda c: api.containers.remove(c, force=force, v=volumes, link=link)))


@click.command("wait", short_help="Block until one or more containers stop, then print their exit codes")
@click.argument("containers", nargs=-1, required=True)
def wait(containers: tuple[str, ...]) -> None:
    """Block until one or more containers stop, then print their exit codes"""
    api = client()

    def one(name: str) -> None:
        result = api.containers.wait(name)
        sys.stdout.write(f"{result.get('StatusCode', 0)}\n")
        sys.stdout.flush()

    fail_if(for_each(containers, one, echo=False))


@click.command("rename", short_help="Rename a container")
@click.argument("container")
@click.argument("new_name")
def rename(container: str, new_name: str) -> None:
    """Rename a container"""
    client().containers.rename(container, new_name)


@click.command("prune", short_help="Remove all stopped containers")
@click.option("--filter", "filters", multiple=True, help='Provide filter values (e.g. "until=<timestamp>")')
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
def container_prune(filters: tuple[str, ...], force: bool) -> None:
    """Remove all stopped containers"""
    from berth.cli.common import parse_filters
    from berth.cli.format.humanize import human_size

    if not force:
        click.echo("WARNING! This will remove all stopped containers.")
        if not click.confirm("Are you sure you want to continue?", default=False, prompt_suffix=" "):
            return
    report = client().containers.prune(parse_filters(filters))
    deleted = report.get("ContainersDeleted") or []
    if deleted:
        click.echo("Deleted Containers:")
        for cid in deleted:
            click.echo(cid)
        click.echo("")
    click.echo(f"Total reclaimed space: {human_size(report.get('SpaceReclaimed') or 0)}")
