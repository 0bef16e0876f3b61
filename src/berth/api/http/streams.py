"""Docker's stream framing: the 8-byte multiplexed header and JSON-lines progress."""

from __future__ import annotations

import json
import struct
from collections.abc import AsyncIterator
from typing import Any

from berth.common.errors import BerthError

STDIN, STDOUT, STDERR, SYSTEMERR = 0, 1, 2, 3


def frame(stream: int, data: bytes) -> bytes:
    """One frame of a multiplexed (non-TTY) stream: [stream, 0, 0, 0, uint32 size] + data."""
    return struct.pack(">BxxxI", stream, len(data)) + data


def json_line(obj: Any) -> bytes:
    return json.dumps(obj).encode() + b"\r\n"


async def json_progress(stream: AsyncIterator[dict[str, Any]], in_band: bool = False) -> AsyncIterator[bytes]:
    """JSON-lines progress; an error after the 200 went out becomes an errorDetail line (with the
    exit `code` of a failed build step, as dockerd's), as does any error when `in_band` (dockerd
    answers a load of a bad archive with 200 and the error)."""
    first = True
    try:
        async for msg in stream:
            first = False
            yield json_line(msg)
    except BerthError as e:
        if first and not in_band:
            raise
        detail: dict[str, Any] = {"message": e.message}
        code = getattr(e, "code", None)
        if isinstance(code, int):
            detail["code"] = code
        yield json_line({"errorDetail": detail, "error": e.message})


def stream_content_type(api_version: str, tty: bool) -> str:
    if tty:
        return "application/vnd.docker.raw-stream"
    major, minor = (int(x) for x in api_version.split("."))
    return ("application/vnd.docker.multiplexed-stream" if (major, minor) >= (1, 42)
            else "application/vnd.docker.raw-stream")
