"""Printing the JSON-message streams of load/import as docker does on a non-terminal."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from berth.cli.errors import Failure
from berth.client.stream import Readable, iter_json


def format_message(msg: dict[str, Any]) -> str:
    """One message as a plain line: `stream` text verbatim, else `id: status progress`."""
    if "stream" in msg:
        return str(msg["stream"])
    parts = []
    if msg.get("id"):
        parts.append(f"{msg['id']}: ")
    parts.append(str(msg.get("status", "")))
    if msg.get("progress"):
        parts.append(f" {msg['progress']}")
    return "".join(parts) + "\n" if any(parts) else ""


def show_messages(reader: Readable, out: TextIO | None = sys.stdout) -> None:
    """Print each message to `out` (None: print nothing).

    An `error` message, the daemon's way to fail after a 200, raises Failure either way.
    """
    for msg in iter_json(reader):
        if not isinstance(msg, dict):
            continue
        if msg.get("error") or msg.get("errorDetail"):
            detail = msg.get("errorDetail") or {}
            raise Failure(str(msg.get("error") or detail.get("message", "unknown error")), 1)
        text = format_message(msg)
        if text and out is not None:
            out.write(text)
            out.flush()
