"""The server side of RFC 6455 websockets, for `GET /containers/{id}/attach/ws`.

One endpoint needs it, and it rides on the hijack machinery of `server.py` (h11 has parsed the
request, we answer the 101, then own the raw connection), so the handshake and the framing are
written here: `websockets` wants to own the connection and the HTTP handshake; `wsproto`
(sans-IO, h11's sibling) would fit, but only its frame layer would be used, a runtime
dependency for what is about a hundred lines here.

dockerd (golang.org/x/net/websocket) sends each write as one frame, binary from API 1.28 on
(text before), and reads the client's data frames as the container's stdin.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
from dataclasses import dataclass

from berth.common.errors import InvalidParameter

from .server import READ_CHUNK, RawStream

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX_FRAME = 16 * 1024 * 1024  # a client frame larger than this is refused (stdin comes in small pieces)
CLOSE_NORMAL, CLOSE_PROTOCOL_ERROR, CLOSE_TOO_BIG = 1000, 1002, 1009


@dataclass
class Upgrade:
    """What the 101 needs: the Sec-WebSocket-Accept value, and the frame type of our writes."""

    accept: str
    binary: bool = True


def handshake(method: str, headers: dict[str, str], binary: bool = True) -> Upgrade:
    """Check a client's opening handshake (RFC 6455 4.2.1); InvalidParameter (400) if it is not one."""
    if method != "GET":
        raise InvalidParameter("websocket: the handshake must be a GET request")
    if "websocket" not in headers.get("upgrade", "").lower() \
            or "upgrade" not in headers.get("connection", "").lower():
        raise InvalidParameter("websocket: the client is not using the websocket protocol: "
                               "'upgrade' token not found in 'Connection' header")
    if headers.get("sec-websocket-version", "").strip() != "13":
        raise InvalidParameter("websocket: unsupported version: 13 is the only one supported")
    key = headers.get("sec-websocket-key", "").strip()
    try:
        valid = len(base64.b64decode(key, validate=True)) == 16
    except ValueError:
        valid = False
    if not valid:
        raise InvalidParameter("websocket: not a websocket handshake: 'Sec-WebSocket-Key' header is missing or invalid")
    accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
    return Upgrade(accept, binary)


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked frame (servers never mask)."""
    n = len(payload)
    if n < 126:
        head = struct.pack(">BB", 0x80 | opcode, n)
    elif n < 1 << 16:
        head = struct.pack(">BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack(">BBQ", 0x80 | opcode, 127, n)
    return head + payload


def unmask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    if not n:
        return payload
    # XOR as one big integer: far faster than a per-byte loop in Python
    pad = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(pad, "big")).to_bytes(n, "big")


class ProtocolError(Exception):
    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code


async def read_frame(read_exactly: _ReadExactly) -> tuple[bool, int, bytes]:
    """(fin, opcode, unmasked payload) of the next client frame."""
    b0, b1 = await read_exactly(2)
    if b0 & 0x70:
        raise ProtocolError(CLOSE_PROTOCOL_ERROR, "reserved bits set without an extension")
    if not b1 & 0x80:
        raise ProtocolError(CLOSE_PROTOCOL_ERROR, "client frames must be masked")
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack(">H", await read_exactly(2))
    elif n == 127:
        (n,) = struct.unpack(">Q", await read_exactly(8))
    if n > MAX_FRAME:
        raise ProtocolError(CLOSE_TOO_BIG, "frame too large")
    key = await read_exactly(4)
    return bool(b0 & 0x80), b0 & 0x0F, unmask(await read_exactly(n), key)


class _ReadExactly:
    """readexactly() over a reader whose first bytes may already have been read (h11's leftover)."""

    def __init__(self, reader: asyncio.StreamReader, leftover: bytes):
        self._reader = reader
        self._buf = leftover

    async def __call__(self, n: int) -> bytes:
        if len(self._buf) >= n:
            data, self._buf = self._buf[:n], self._buf[n:]
            return data
        data, self._buf = self._buf, b""
        return data + await self._reader.readexactly(n - len(data))


class WebSocketStream(RawStream):
    """The hijacked connection as the backends see it (read/write bytes), framed as a websocket:
    each write is one data frame; reads give the payloads of the client's data frames and b""
    once it sends a close frame or goes away. Pings are answered as they come."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, leftover: bytes,
                 binary: bool = True):
        super().__init__(reader, writer, b"")
        self._read_exactly = _ReadExactly(reader, leftover)
        self._opcode = OP_BINARY if binary else OP_TEXT
        self._pending = b""
        self._eof = False
        self._eof_seen = asyncio.Event()
        self._reading = False
        self._close_sent = False

    async def read(self, n: int = READ_CHUNK) -> bytes:
        self._reading = True
        try:
            return await self._read(n)
        finally:
            self._reading = False
            if self._eof and not self._pending:
                self._eof_seen.set()

    async def _read(self, n: int) -> bytes:
        while not self._pending and not self._eof:
            try:
                _fin, opcode, payload = await read_frame(self._read_exactly)
            except (asyncio.IncompleteReadError, ConnectionError):
                self._eof = True
                break
            except ProtocolError as e:
                self._eof = True
                self._send_close(e.code)
                break
            if opcode == OP_PING:
                await self._send(OP_PONG, payload)
            elif opcode == OP_CLOSE:
                self._eof = True
                # echo the client's status code, as RFC 6455 5.5.1 asks
                self._send_close(struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else CLOSE_NORMAL)
            elif opcode in (OP_TEXT, OP_BINARY, OP_CONT):
                self._pending = payload  # fragments are just more stdin bytes
        data, self._pending = self._pending[:n], self._pending[n:]
        return data

    async def write(self, data: bytes) -> None:
        if self._close_sent:  # the client closed: end the attachment as a broken connection would
            raise ConnectionResetError("the websocket is closed")
        if data:
            await self._send(self._opcode, data)

    def close_write(self) -> None:
        self._send_close(CLOSE_NORMAL)

    async def finish(self, timeout: float = 2.0) -> None:
        """Close as RFC 6455 7.1.1 asks: our close frame, then the client's, then the connection."""
        self._send_close(CLOSE_NORMAL)
        try:
            async with asyncio.timeout(timeout):
                await self._writer.drain()
                if self._reading:  # the stdin forwarder reads: it will see the close frame
                    await self._eof_seen.wait()
                else:
                    while await self.read():
                        pass
        except (TimeoutError, ConnectionError):
            pass

    async def _send(self, opcode: int, payload: bytes) -> None:
        self._writer.write(encode_frame(opcode, payload))
        await self._writer.drain()

    def _send_close(self, code: int) -> None:
        if self._close_sent:
            return
        self._close_sent = True
        try:
            self._writer.write(encode_frame(OP_CLOSE, struct.pack(">H", code)))
        except (ConnectionError, RuntimeError):
            pass
