"""`berth exec`: create an exec, run it attached (or detached), exit with its exit code."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from berth.cli.common import client
from berth.cli.errors import Failure, daemon_error
from berth.cli.runopts import OptionError, env_file_entries, parse_env
from berth.client.errors import ClientError


@click.command(
    "exec",
    context_settings={"allow_interspersed_args": False, "help_option_names": ["--help"]},
    short_help="Execute a command in a running container",
)
@click.option("-d", "--detach", is_flag=True, help="Detached mode: run command in the background")
@click.option("-e", "--env", multiple=True, help="Set environment variables")
@click.option(
    "--env-file",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Read in a file of environment variables",
)
@click.option("-i", "--interactive", is_flag=True, help="Keep STDIN open even if not attached")
@click.option("--privileged", is_flag=True, help="Give extended privileges to the command")
@click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY")
@click.option("-u", "--user", help="Username or UID (format: <name|uid>[:<group|gid>])")
@click.option("-w", "--workdir", help="Working directory inside the container")
@click.argument("container")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(
    detach: bool,
    env: tuple[str, ...],
    env_file: tuple[str, ...],
    interactive: bool,
    privileged: bool,
    tty: bool,
    user: str | None,
    workdir: str | None,
    container: str,
    command: tuple[str, ...],
) -> None:
    """Execute a command in a running container"""
    if tty and interactive and sys.stdin.isatty():
        raise Failure("berth: interactive TTY sessions (-it) are not supported yet", 1)
    lines: list[str] = []
    for path in env_file:
        try:
            with open(path, encoding="utf-8") as fh:
                lines += env_file_entries(fh.read())
        except OSError as exc:
            raise Failure(f"open {path}: {exc.strerror or exc}", 1) from exc
    try:
        environment = parse_env(lines, os.environ) + parse_env(env, os.environ)
    except OptionError as exc:
        raise Failure(str(exc), 1) from exc
    config: dict[str, Any] = {
        "User": user or "",
        "Privileged": privileged,
        "Tty": tty,
        "AttachStdin": interactive and not detach,
        "AttachStdout": not detach,
        "AttachStderr": not detach,
        "Detach": detach,
        "Cmd": list(command),
        "Env": environment or None,
        "WorkingDir": workdir or "",
    }
    api = client()
    exec_id = api.containers.exec_create(container, config)["Id"]
    if detach:
        api.execs.start_detached(exec_id)
        return
    _run_attached(exec_id, interactive, tty)
    code = int(api.execs.inspect(exec_id).get("ExitCode") or 0)
    if code:
        raise Failure(None, code)


def _run_attached(exec_id: str, interactive: bool, tty: bool) -> None:
    from berth.cli.streams import copy_output, pump_stdin
    from berth.client.stream import SocketReader

    try:
        sock, buffered = client().execs.start_attached(exec_id, tty=tty)
    except ClientError as exc:
        # A command that cannot start is reported by start; its inspect then holds 126/127.
        print(daemon_error(exc), file=sys.stderr)
        return
    try:
        if interactive:
            pump_stdin(sock)
        copy_output(SocketReader(sock, buffered), tty=tty)
    finally:
        sock.close()
