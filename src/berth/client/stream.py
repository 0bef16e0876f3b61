"""Decoders for the Engine API's streamed bodies.

Two framings live here and nowhere else:
- JSON lines (progress of load/import, events): concatenated JSON values, usually newline-separated.
- The multiplexed stdout/stderr stream of logs/attach/exec without a TTY: each frame is an 8-byte
  header (stream byte: 0 stdin, 1 stdout, 2 stderr; three zero bytes; big-endian uint32 length)
  followed by that many payload bytes.
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Generator, Iterator
from typing import Any, Protocol

STDIN = 0
STDOUT = 1
STDERR = 2

_HEADER = struct.Struct(">BxxxL")


class Readable(Protocol):
    """What the decoders need: `read1(n)` returns at most n bytes, b"" at end of stream."""

    def read1(self, n: int = ..., /) -> bytes: ...


class SocketReader:
    """A raw (hijacked) socket seen as a Readable, replaying bytes the HTTP layer already buffered."""

    def __init__(self, sock: socket.socket, buffered: bytes = b"") -> None:
        self.sock = sock
        self._pending = buffered

    def read1(self, n: int = 65536, /) -> bytes:
        if self._pending:
            chunk, self._pending = self._pending[:n], self._pending[n:]
            return chunk
        try:
            return self.sock.recv(n)
        except ConnectionResetError:
            return b""


def read_exact(reader: Readable, n: int) -> bytes:
    """Read exactly n bytes; fewer only if the stream ends first."""
    parts: list[bytes] = []
    remaining = n
    while remaining > 0:
        chunk = reader.read1(remaining)
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


def encode_frame(stream: int, payload: bytes) -> bytes:
    """Build one multiplexed frame (used by tests and fakes)."""
    return _HEADER.pack(stream, len(payload)) + payload


def iter_frames(reader: Readable) -> Iterator[tuple[int, bytes]]:
    """Yield (stream, payload) for each multiplexed frame until the stream ends."""
    while True:
        header = read_exact(reader, _HEADER.size)
        if len(header) < _HEADER.size:
            return
        stream, length = _HEADER.unpack(header)
        payload = read_exact(reader, length)
        yield stream, payload
        if len(payload) < length:
            return


def iter_raw(reader: Readable, chunk_size: int = 65536) -> Iterator[bytes]:
    """Yield the unframed bytes of a TTY stream as they arrive."""
    while True:
        chunk = reader.read1(chunk_size)
        if not chunk:
            return
        yield chunk


def iter_json(reader: Readable, chunk_size: int = 65536) -> Iterator[Any]:
    """Yield each JSON value of a stream of concatenated (usually newline-separated) JSON values."""
    decoder = json.JSONDecoder()
    buf = ""
    pending = b""
    while True:
        chunk = reader.read1(chunk_size)
        if not chunk:
            break
        # A chunk boundary may split a multi-byte UTF-8 sequence: decode only whole characters.
        data = pending + chunk
        try:
            text = data.decode()
            pending = b""
        except UnicodeDecodeError as exc:
            text, pending = data[: exc.start].decode(), data[exc.start :]
        buf += text
        buf = yield from _drain(decoder, buf)
    buf = (buf + pending.decode(errors="replace")).strip()
    if buf:
        yield json.loads(buf)


def _drain(decoder: json.JSONDecoder, buf: str) -> Generator[Any, None, str]:
    """Yield the complete values in `buf`; return the incomplete tail."""
    pos = 0
    while True:
        while pos < len(buf) and buf[pos] in " \t\r\n":
            pos += 1
        if pos >= len(buf):
            return ""
        try:
            value, end = decoder.raw_decode(buf, pos)
        except json.JSONDecodeError:
            # Incomplete value: keep the tail for the next chunk.
            return buf[pos:]
        yield value
        pos = end
