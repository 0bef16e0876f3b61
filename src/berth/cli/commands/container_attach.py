"""`berth attach`: join a running container's streams (non-TTY, or TTY output only)."""

from __future__ import annotations

import sys

import click

from berth.cli.common import client
from berth.cli.errors import Failure


@click.command(
    "attach", short_help="Attach local standard input, output, and error streams to a running container"
)
@click.option("--no-stdin", is_flag=True, help="Do not attach STDIN")
@click.option("--sig-proxy/--no-sig-proxy", default=True, help="Proxy all received signals to the process")
@click.argument("container")
def attach(no_stdin: bool, sig_proxy: bool, container: str) -> None:
    """Attach local standard input, output, and error streams to a running container"""
    from berth.cli.streams import copy_output, pump_stdin
    from berth.client.stream import SocketReader

    api = client()
    info = api.containers.inspect(container)
    state = info.get("State") or {}
    if not state.get("Running"):
        raise Failure("You cannot attach to a stopped container, start it first", 1)
    config = info.get("Config") or {}
    tty = bool(config.get("Tty"))
    with_stdin = not no_stdin and bool(config.get("OpenStdin"))
    if tty and with_stdin and sys.stdin.isatty():
        raise Failure("berth: attaching a terminal to a TTY container is not supported yet", 1)
    sock, buffered = api.containers.attach(info["Id"], stdin=with_stdin)
    try:
        if with_stdin:
            pump_stdin(sock)
        copy_output(SocketReader(sock, buffered), tty=tty)
    finally:
        sock.close()
    # The stream ended: report the container's exit code as docker attach does.
    final = api.containers.inspect(info["Id"]).get("State") or {}
    if not final.get("Running") and final.get("ExitCode"):
        raise Failure(None, int(final["ExitCode"]))
