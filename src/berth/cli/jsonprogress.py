"""Showing pull/push progress streams as docker does: one line per layer rewritten in place on a
terminal; on anything else, each status once, without the progress bars."""

from __future__ import annotations

from typing import Any, TextIO

from berth.cli.errors import Failure
from berth.client.stream import Readable, iter_json


def _line(msg: dict[str, Any], tty: bool) -> str:
    text = f"{msg['id']}: " if msg.get("id") else ""
    text += str(msg.get("status", ""))
    if tty and msg.get("progress"):
        text += " " + str(msg["progress"])
    return text


def show(reader: Readable, out: TextIO, tty: bool) -> list[dict[str, Any]]:
    """Print the stream; returns its `aux` payloads. An `error` message raises Failure."""
    aux: list[dict[str, Any]] = []
    rows: dict[str, int] = {}  # layer id -> its line (0 = first printed)
    count = 0
    for msg in iter_json(reader):
        if not isinstance(msg, dict):
            continue
        if msg.get("error") or msg.get("errorDetail"):
            detail = msg.get("errorDetail") or {}
            raise Failure(str(msg.get("error") or detail.get("message", "unknown error")), 1)
        if "aux" in msg:
            aux.append(msg["aux"])
            continue
        if not msg.get("status") and not msg.get("id"):
            continue
        ident = msg.get("id")
        if not tty:
            if msg.get("progress") or msg.get("progressDetail", {}).get("current"):
                continue
            out.write(_line(msg, False) + "\n")
            continue
        if ident and ident in rows:
            up = count - rows[ident]
            out.write(f"\x1b[{up}A\r\x1b[2K{_line(msg, True)}\r\x1b[{up}B")
        else:
            if ident:
                rows[ident] = count
            out.write(_line(msg, True) + "\n")
            count += 1
        out.flush()
    out.flush()
    return aux
