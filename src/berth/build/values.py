"""Checks and conversions of expanded instruction values that the builder applies at dispatch.

EXPOSE ports (docker's nat.ParsePortSpecs), STOPSIGNAL names, WORKDIR resolution, and the argv a
RUN with heredocs executes (BuildKit's rules).
"""

from __future__ import annotations

import posixpath
import re
import signal
from collections.abc import Sequence
from dataclasses import dataclass

from berth.build import instructions as ins
from berth.build.dockerfile import parse_heredoc
from berth.common.errors import InvalidParameter

_PORT = re.compile(r"^(?:(?:\[[0-9a-fA-F:.]*\]|[0-9.]*):(?:[0-9]*(?:-[0-9]+)?)?:)?"
                   r"(?P<start>[0-9]+)(?:-(?P<end>[0-9]+))?(?:/(?P<proto>.*))?$")
_PROTOCOLS = ("tcp", "udp", "sctp")


def exposed_ports(ports: Sequence[str]) -> list[str]:
    """`80`, `53/udp`, `8000-8002` -> ["80/tcp", "53/udp", "8000/tcp", ...] (config ExposedPorts keys)."""
    out: list[str] = []
    for spec in ports:
        match = _PORT.match(spec)
        if not match:
            raise InvalidParameter(f"Invalid containerPort: {spec}")
        proto = (match.group("proto") or "tcp").lower()
        if proto not in _PROTOCOLS:
            raise InvalidParameter(f"Invalid proto: {proto}")
        start = int(match.group("start"))
        end = int(match.group("end") or start)
        if end < start or end > 65535:
            raise InvalidParameter(f"Invalid containerPort: {spec}")
        for port in range(start, end + 1):
            key = f"{port}/{proto}"
            if key not in out:
                out.append(key)
    return out


def parse_signal(raw: str) -> int:
    """STOPSIGNAL: a number or a name with or without SIG (`SIGTERM`, `term`, `RTMIN+3`)."""
    if raw.isdigit():
        if int(raw) == 0:
            raise InvalidParameter(f"Invalid signal: {raw}")
        return int(raw)
    name = raw.upper().removeprefix("SIG")
    match = re.fullmatch(r"RT(MIN|MAX)([+-]\d+)?", name)
    if match:
        base = signal.SIGRTMIN if match.group(1) == "MIN" else signal.SIGRTMAX
        return int(base) + int(match.group(2) or 0)
    try:
        return int(signal.Signals["SIG" + name])
    except KeyError:
        raise InvalidParameter(f"Invalid signal: {raw}") from None


def resolve_workdir(current: str, path: str) -> str:
    """WORKDIR: a relative path joins the current directory; the result is clean and absolute."""
    joined = posixpath.normpath(posixpath.join("/", current or "/", path))
    return "/" + joined.lstrip("/")


@dataclass(frozen=True)
class RunCommand:
    """What a RUN executes: argv (before the shell is prepended) and files to mount read-only."""

    cmd: tuple[str, ...]
    prepend_shell: bool
    files: tuple[tuple[str, str, int], ...] = ()  # (absolute path, content, mode)


PIPES_DIR = "/dev/pipes"


def run_command(run: ins.Run) -> RunCommand:
    """Apply BuildKit's heredoc rules to a RUN.

    `RUN <<EOF` alone runs the body as the shell command; a body starting with `#!` becomes an
    executable file under /dev/pipes that is run instead; anything else (`RUN cat <<EOF > f`)
    is handed to the shell with the bodies re-attached, so the shell does the heredoc itself.
    """
    if not run.files:
        return RunCommand(run.cmd, run.prepend_shell)
    if len(run.cmd) != 1 or not run.prepend_shell:
        raise InvalidParameter(f"parsing produced an invalid run command: {list(run.cmd)}")
    if parse_heredoc(run.cmd[0]) is not None:
        first = run.files[0]
        if first.content.startswith("#!"):
            path = posixpath.join(PIPES_DIR, first.name)
            return RunCommand((path,), True, ((path, first.data, 0o755),))
        return RunCommand((first.data,), True)
    full = run.cmd[0]
    for doc in run.files:
        full += "\n" + doc.content + doc.name
    return RunCommand((full,), True)
