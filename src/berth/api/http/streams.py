"""Docker's stream framing: the 8-byte multiplexed header and JSON-lines progress."""

from __future__ import annotations

import json
import struct
from typing import Any

STDIN, STDOUT, STDERR, SYSTEMERR = 0, 1, 2, 3


def frame(stream: int, data: bytes) -> bytes:
    """One frame of a multiplexed (non-TTY) stream: [stream, 0, 0, 0, uint32 size] + data."""
    return struct.pack(">BxxxI", stream, len(data)) + data


def json_line(obj: Any) -> bytes:
    return json.dumps(obj).encode() + b"\r\n"


def stream_content_type(api_version: str, tty: bool) -> str:
    if tty:
        return "application/vnd.docker.raw-stream"
    major, minor = (int(x) for x in api_version.split("."))
    return ("application/vnd.docker.multiplexed-stream" if (major, minor) >= (1, 42)
            else "application/vnd.docker.raw-stream")
