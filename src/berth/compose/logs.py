"""`logs` and the attached `up`: each container's log stream, prefixed `service-n  | `, in colour on a TTY."""

from __future__ import annotations

import queue
import sys
import threading
from typing import Any

from berth.compose.executor import Compose

_COLOURS = [36, 33, 32, 35, 34, 96, 93, 92, 95, 94]


def _prefix(c: dict[str, Any], width: int, colour: int | None) -> str:
    name = (c.get("Names") or ["/?"])[0].lstrip("/")
    text = f"{name.ljust(width)}  | "
    return f"\x1b[{colour}m{text}\x1b[0m" if colour is not None else text


def _pump(compose: Compose, c: dict[str, Any], prefix: str, out: queue.Queue[tuple[str, bytes] | None],
          follow: bool, timestamps: bool, tail: str) -> None:
    from berth.client.stream import iter_frames, iter_raw

    try:
        resp = compose.client.containers.logs(c["Id"], follow=follow, timestamps=timestamps,
                                              tail=None if tail == "all" else tail)
        # A TTY container's log is a raw stream; the list endpoint does not say, inspect does.
        tty = bool((compose.client.containers.inspect(c["Id"]).get("Config") or {}).get("Tty"))
        frames = ((1, b) for b in iter_raw(resp)) if tty else iter_frames(resp)
        pending = b""
        for _, data in frames:
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                out.put((prefix, line + b"\n"))
        if pending:
            out.put((prefix, pending + b"\n"))
    except Exception as exc:  # a container removed mid-stream ends its stream, not the command
        out.put((prefix, f"(log stream ended: {exc})\n".encode()))
    finally:
        out.put(None)


def show(compose: Compose, services: list[str], follow: bool = False, timestamps: bool = False,
         tail: str = "all", color: bool = False, prefix: bool = True) -> None:
    containers = compose.containers(services)
    stream(compose, containers, follow, timestamps, tail, color, prefix)


def stream(compose: Compose, containers: list[dict[str, Any]], follow: bool, timestamps: bool, tail: str,
           color: bool, prefix: bool) -> None:
    width = max((len((c.get("Names") or ["/?"])[0]) - 1 for c in containers), default=0)
    out: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
    for i, c in enumerate(containers):
        text = _prefix(c, width, _COLOURS[i % len(_COLOURS)] if color else None) if prefix else ""
        threading.Thread(target=_pump, args=(compose, c, text, out, follow, timestamps, tail), daemon=True).start()
    live = len(containers)
    while live:
        item = out.get()
        if item is None:
            live -= 1
            continue
        sys.stdout.buffer.write(item[0].encode() + item[1])
        sys.stdout.flush()


def follow(compose: Compose, services: list[str], abort_on_exit: bool = False,
           exit_code_from: str | None = None) -> int:
    """Attached `up`: follow logs until the containers exit (or the first exits, with abort_on_exit)."""
    # All, not only running ones: a short job may have exited before we look.
    containers = compose.containers(services)
    if not abort_on_exit:
        stream(compose, containers, True, False, "all", sys.stdout.isatty(), True)
        return 0
    done: queue.Queue[dict[str, Any]] = queue.Queue()

    def wait(c: dict[str, Any]) -> None:
        result = compose.client.containers.wait(c["Id"])
        done.put({**c, "StatusCode": int(result.get("StatusCode", 0))})

    for c in containers:
        threading.Thread(target=wait, args=(c,), daemon=True).start()
    threading.Thread(target=stream, args=(compose, containers, True, False, "all", sys.stdout.isatty(), True),
                     daemon=True).start()
    first = done.get()
    if exit_code_from:
        while first["Labels"].get("com.docker.compose.service") != exit_code_from:
            first = done.get()
    return int(first["StatusCode"])
