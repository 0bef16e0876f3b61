"""asyncio + h11 HTTP/1.1 server for the Engine API on a unix socket.

It owns connections, request parsing, response framing (plain, chunked streams) and the
connection hijack that `attach` and `exec start` need (`Upgrade: tcp` -> 101, then a raw
two-way stream). Routing and everything Docker-specific live in `router.py`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import h11

from berth.common.errors import BerthError, InvalidParameter

if TYPE_CHECKING:
    from .websocket import Upgrade

log = logging.getLogger("berth.api")

MAX_HEADER_BYTES = 64 * 1024
READ_CHUNK = 256 * 1024
UPGRADE_GRACE = 0.02  # seconds between a 101 and the first bytes of the upgraded stream


class Request:
    """One parsed request; the body is read lazily so large uploads can be streamed."""

    def __init__(self, conn: _Connection, method: str, target: str, headers: list[tuple[bytes, bytes]]):
        self._conn = conn
        self.method = method
        split = urlsplit(target)
        self.path = split.path
        self.query: dict[str, list[str]] = parse_qs(split.query, keep_blank_values=True)
        self.headers: dict[str, str] = {}
        for k, v in headers:
            key = k.decode("latin-1").lower()
            val = v.decode("latin-1")
            self.headers[key] = f"{self.headers[key]}, {val}" if key in self.headers else val
        self.api_version = ""
        self.params: dict[str, str] = {}
        self._body: bytes | None = None
        self._body_done = False

    # --- query helpers, Docker's conventions ------------------------------------------------
    def q(self, name: str, default: str | None = None) -> str | None:
        vals = self.query.get(name)
        return vals[-1] if vals else default

    def qbool(self, name: str, default: bool = False) -> bool:
        val = self.q(name)
        if val is None:
            return default
        # dockerd's BoolValue: "", "0", "no", "false", "none" are false
        return val.strip().lower() not in ("", "0", "no", "false", "none")

    def qint(self, name: str, default: int | None = None) -> int | None:
        val = self.q(name)
        if val is None or val == "":
            return default
        try:
            return int(val)
        except ValueError:
            raise InvalidParameter(f"invalid value for {name}: {val!r}") from None

    def qjson(self, name: str, default: Any = None) -> Any:
        val = self.q(name)
        if not val:
            return default
        try:
            return json.loads(val)
        except ValueError:
            raise InvalidParameter(f"invalid JSON in parameter {name}") from None

    @property
    def upgrade_requested(self) -> bool:
        return "upgrade" in self.headers.get("connection", "").lower()

    # --- body --------------------------------------------------------------------------------
    async def stream(self) -> AsyncIterator[bytes]:
        if self._body is not None:
            if self._body:
                yield self._body
            return
        while not self._body_done:
            event = await self._conn.next_event()
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._body_done = True
            else:
                raise InvalidParameter("unexpected end of request body")

    async def read(self) -> bytes:
        if self._body is None:
            chunks = [c async for c in self.stream()]
            self._body = b"".join(chunks)
        return self._body

    async def json(self, required: bool = False) -> Any:
        body = await self.read()
        if not body.strip():
            if required:
                raise InvalidParameter("request body is empty; expected JSON")
            return None
        try:
            return json.loads(body)
        except ValueError as e:
            raise InvalidParameter(f"invalid JSON: {e}") from None

    async def drain(self) -> None:
        async for _ in self.stream():
            pass


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class FileResponse(Response):
    """`length` bytes of the file at `path` from `offset`, sent with a Content-Length (over plain
    TCP straight from the page cache with sendfile)."""

    path: str = ""
    offset: int = 0
    length: int = 0


FILE_CHUNK = 1 << 20


class _Span:
    """Stands for `n` body bytes in h11's bookkeeping; the kernel sends them (sendfile)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


def json_response(obj: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(obj).encode() + b"\n")


def error_response(status: int, message: str) -> Response:
    return json_response({"message": message}, status)


@dataclass
class StreamResponse:
    """A chunked response whose body is produced as it is sent (logs -f, events, progress)."""

    body: AsyncIterator[bytes]
    status: int = 200
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    # Send the headers before the first chunk exists (wait, logs -f, events): clients block on them.
    eager: bool = False


class RawStream:
    """The hijacked connection after a 101 (or a 200 for clients that did not ask to upgrade)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, leftover: bytes,
                 not_before: float = 0.0):
        self._reader = reader
        self._writer = writer
        self._leftover = leftover
        self._not_before = not_before  # loop time before which nothing is written

    async def read(self, n: int = READ_CHUNK) -> bytes:
        if self._leftover:
            data, self._leftover = self._leftover[:n], self._leftover[n:]
            return data
        return await self._reader.read(n)

    async def write(self, data: bytes) -> None:
        if self._not_before:
            delay = self._not_before - asyncio.get_running_loop().time()
            self._not_before = 0.0
            if delay > 0:
                await asyncio.sleep(delay)
        self._writer.write(data)
        await self._writer.drain()

    def close_write(self) -> None:
        try:
            if self._writer.can_write_eof():
                self._writer.write_eof()
        except OSError:
            pass


@dataclass
class HijackResponse:
    """Take over the connection: answer 101 (or 200) and hand the socket to `run`."""

    run: Callable[[RawStream], Awaitable[None]]
    content_type: str = "application/vnd.docker.raw-stream"
    websocket: Upgrade | None = None  # a checked websocket handshake: 101 to websocket, framed stream


Handler = Callable[[Request], Awaitable[Response | StreamResponse | HijackResponse]]


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: Handler):
        self.reader = reader
        self.writer = writer
        self.handler = handler
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        self.head = False  # the request being answered is a HEAD

    async def next_event(self) -> Any:
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                data = await self.reader.read(READ_CHUNK)
                self.h11.receive_data(data)
                continue
            return event

    async def send(self, event: Any) -> None:
        data = self.h11.send(event)
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def serve(self) -> None:
        try:
            while True:
                try:
                    event = await self.next_event()
                except h11.RemoteProtocolError as e:
                    await self._send_simple(error_response(e.error_status_hint, str(e)))
                    return
                if isinstance(event, (h11.ConnectionClosed,)) or event is h11.PAUSED:
                    return
                if not isinstance(event, h11.Request):
                    return
                req = Request(self, event.method.decode(), event.target.decode("latin-1"), list(event.headers))
                self.head = req.method == "HEAD"
                keep_going = await self._handle(req)
                if not keep_going:
                    return
                if self.h11.our_state is h11.MUST_CLOSE or self.h11.their_state is h11.MUST_CLOSE:
                    return
                try:
                    self.h11.start_next_cycle()
                except h11.LocalProtocolError:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            try:
                self.writer.close()
            except Exception:  # noqa: BLE001 - closing a dead socket is not an error worth reporting
                pass

    async def _handle(self, req: Request) -> bool:
        # Go and curl clients may wait for "100 Continue" before sending an upload's body.
        if self.h11.they_are_waiting_for_100_continue:
            await self.send(h11.InformationalResponse(status_code=100, headers=[]))
        started = time.perf_counter()
        try:
            resp = await self.handler(req)
        except BerthError as e:
            resp = error_response(e.status, e.message)
        except Exception as e:  # a real fault: log it with the traceback, answer 500
            log.exception("handler failed: %s %s", req.method, req.path)
            resp = error_response(500, f"internal error: {e}")
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s -> %s in %.1f ms", req.method, req.path, type(resp).__name__,
                      (time.perf_counter() - started) * 1000)
        if isinstance(resp, HijackResponse):
            await self._hijack(req, resp)
            return False
        if isinstance(resp, StreamResponse):
            await self._send_stream(resp)  # may consume the request body itself (load, import)
        else:
            await self._send_simple(resp)
        # finish reading the body so the connection can be reused
        if self.h11.their_state is h11.SEND_BODY:
            try:
                await req.drain()
            except BerthError:
                return False
        return True

    async def _send_simple(self, resp: Response) -> None:
        if self.h11.our_state is not h11.SEND_RESPONSE:
            return
        headers = _base_headers(resp.content_type, resp.headers)
        # A handler may state the length itself: a HEAD answer gives the size of what a GET would.
        if not any(k.lower() == "content-length" for k, _ in resp.headers):
            length = resp.length if isinstance(resp, FileResponse) else len(resp.body)
            headers.append(("Content-Length", str(length)))
        await self.send(h11.Response(status_code=resp.status, headers=headers))
        if not self.head:  # a HEAD answer (an error too) has the headers only
            if isinstance(resp, FileResponse):
                await self._send_file(resp)
            elif resp.body:
                await self.send(h11.Data(data=resp.body))
        await self.send(h11.EndOfMessage())

    async def _send_file(self, resp: FileResponse) -> None:
        if resp.length and self.writer.get_extra_info("sslcontext") is None:
            await self._sendfile(resp)
            return
        with open(resp.path, "rb") as f:
            f.seek(resp.offset)
            left = resp.length
            while left > 0:
                chunk = f.read(min(FILE_CHUNK, left))
                if not chunk:  # the file shrank under us: cannot happen to an immutable blob
                    raise ConnectionError(f"short read on {os.path.basename(resp.path)}")
                left -= len(chunk)
                await self.send(h11.Data(data=chunk))

    async def _sendfile(self, resp: FileResponse) -> None:
        """Plain sockets: the file goes from the page cache to the socket without passing through
        Python (h11 is only told how many bytes went), which halves the CPU per blob served."""
        span = _Span(resp.length)
        pieces = self.h11.send_with_data_passthrough(h11.Data(data=span))  # type: ignore[arg-type]
        if pieces != [span]:  # not Content-Length framing: cannot happen for a FileResponse
            raise ConnectionError("unexpected framing for a file body")
        await self.writer.drain()
        with open(resp.path, "rb") as f:
            sent = await asyncio.get_running_loop().sendfile(self.writer.transport, f, resp.offset, resp.length)
        if sent != resp.length:
            raise ConnectionError(f"short sendfile of {os.path.basename(resp.path)}")

    async def _send_stream(self, resp: StreamResponse) -> None:
        headers = _base_headers(resp.content_type, resp.headers)
        headers.append(("Transfer-Encoding", "chunked"))
        body = resp.body
        if resp.eager:
            await self.send(h11.Response(status_code=resp.status, headers=headers))
            first: bytes | None = b""
        else:
            # Let the generator raise its error before the 200 goes out, so errors keep their status.
            try:
                first = await anext(body, None)
            except BerthError as e:
                await self._send_simple(error_response(e.status, e.message))
                return
            await self.send(h11.Response(status_code=resp.status, headers=headers))
        try:
            if first is not None:
                if first:
                    await self.send(h11.Data(data=first))
                async for chunk in body:
                    if chunk:
                        await self.send(h11.Data(data=chunk))
        except BerthError as e:
            log.info("stream ended with error: %s", e.message)
        finally:
            aclose = getattr(body, "aclose", None)
            if aclose is not None:
                await aclose()
        await self.send(h11.EndOfMessage())

    async def _hijack(self, req: Request, resp: HijackResponse) -> None:
        if self.h11.their_state is h11.SEND_BODY:
            await req.drain()
        if resp.websocket is not None:
            from .websocket import WebSocketStream

            await self.send(h11.InformationalResponse(status_code=101, headers=[
                ("Upgrade", "websocket"), ("Connection", "Upgrade"),
                ("Sec-WebSocket-Accept", resp.websocket.accept)]))
            leftover, _closed = self.h11.trailing_data
            ws = WebSocketStream(self.reader, self.writer, bytes(leftover), resp.websocket.binary)
            try:
                await resp.run(ws)
            except (ConnectionError, BerthError) as e:
                log.info("websocket stream ended: %s", e)
            await ws.finish()
            return
        if req.upgrade_requested and self.h11.their_state is h11.MIGHT_SWITCH_PROTOCOL:
            await self.send(h11.InformationalResponse(status_code=101, headers=[
                ("Content-Type", resp.content_type), ("Connection", "Upgrade"), ("Upgrade", "tcp")]))
            leftover, _closed = self.h11.trailing_data
            # docker-py reads the upgraded stream from the raw socket beneath http.client's
            # buffered reader: bytes that arrive together with the 101 would be lost in that
            # buffer. dockerd's first bytes come later by the nature of its work; ours need this.
            # The docker CLI (Go) keeps reading through the same buffer: no wait for it.
            go_client = req.headers.get("user-agent", "").startswith("Docker-Client/")
            not_before = 0.0 if go_client else asyncio.get_running_loop().time() + UPGRADE_GRACE
        else:
            # Old clients: a 200 whose body is the raw stream until we close.
            self.writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: " + resp.content_type.encode() + b"\r\n"
                + _api_header_bytes() + b"\r\n")
            leftover = b""
            not_before = 0.0
        stream = RawStream(self.reader, self.writer, bytes(leftover), not_before)
        try:
            await resp.run(stream)
        except (ConnectionError, BerthError) as e:
            log.info("hijacked stream ended: %s", e)


_API_HEADERS: list[tuple[str, str]] = []


def set_api_headers(headers: list[tuple[str, str]]) -> None:
    """Headers on every response (Api-Version, Server, ...), set once by the router at start."""
    _API_HEADERS[:] = headers


def _api_header_bytes() -> bytes:
    return b"".join(f"{k}: {v}\r\n".encode() for k, v in _API_HEADERS)


def _base_headers(content_type: str | None, extra: list[tuple[str, str]]) -> list[tuple[str, str]]:
    headers = list(_API_HEADERS)
    if content_type:
        headers.append(("Content-Type", content_type))
    headers.extend(extra)
    return headers


async def serve_unix(path: str, handler: Handler, mode: int = 0o660) -> asyncio.AbstractServer:
    """Listen on a unix socket; an existing stale socket file is replaced."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    os.chmod(path, mode)
    sock.listen(512)

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _Connection(reader, writer, handler).serve()

    return await asyncio.start_unix_server(on_client, sock=sock, limit=READ_CHUNK)


async def serve_tcp(host: str, port: int, handler: Handler, tls: ssl.SSLContext | None = None) -> asyncio.Server:
    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _Connection(reader, writer, handler).serve()

    return await asyncio.start_server(on_client, host, port, limit=READ_CHUNK, ssl=tls)
