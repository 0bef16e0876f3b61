"""The registry's use of the shared asyncio + h11 server core (`berth.api.http.server`).

Two things the Engine API never needed: a HEAD answer that states the real Content-Length
(clients size blobs from it), and a body streamed from a file with a Content-Length rather than
chunked. Both are a small subclass of the core's connection; the rest (parsing, keep-alive,
body streaming) is the core's.
TODO(lead): fold `FileResponse` and explicit Content-Length into the core, then drop the subclass.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from dataclasses import dataclass

import h11

from berth.api.http.server import (
    READ_CHUNK,
    Handler,
    Request,
    Response,
    _base_headers,
    _Connection,
)

FILE_CHUNK = 1 << 20


@dataclass
class FileResponse(Response):
    """`length` bytes of the file at `path` from `offset`, sent with a Content-Length."""

    path: str = ""
    offset: int = 0
    length: int = 0


class _RegistryConnection(_Connection):
    async def _handle(self, req: Request) -> bool:
        # Go and curl clients may wait for "100 Continue" before sending an upload's body.
        if self.h11.they_are_waiting_for_100_continue:
            await self.send(h11.InformationalResponse(status_code=100, headers=[]))
        return await super()._handle(req)

    async def _send_simple(self, resp: Response) -> None:
        if self.h11.our_state is not h11.SEND_RESPONSE:
            return
        headers = _base_headers(resp.content_type, resp.headers)
        if not any(k.lower() == "content-length" for k, _ in resp.headers):
            length = resp.length if isinstance(resp, FileResponse) else len(resp.body)
            headers.append(("Content-Length", str(length)))
        await self.send(h11.Response(status_code=resp.status, headers=headers))
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
        """Plain TCP: the blob goes from the page cache to the socket without passing through
        Python (h11 is only told how many bytes went), which halves the server's CPU per pull."""
        span = _Span(resp.length)
        pieces = self.h11.send_with_data_passthrough(h11.Data(data=span))  # type: ignore[arg-type]
        if pieces != [span]:  # not Content-Length framing: cannot happen for a FileResponse
            raise ConnectionError("unexpected framing for a file body")
        await self.writer.drain()
        with open(resp.path, "rb") as f:
            sent = await asyncio.get_running_loop().sendfile(self.writer.transport, f, resp.offset, resp.length)
        if sent != resp.length:
            raise ConnectionError(f"short sendfile of {os.path.basename(resp.path)}")


class _Span:
    """Stands for `n` body bytes in h11's bookkeeping; the kernel sends them (sendfile)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


async def serve(host: str, port: int, handler: Handler, tls: ssl.SSLContext | None = None) -> asyncio.Server:
    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _RegistryConnection(reader, writer, handler).serve()

    return await asyncio.start_server(on_client, host, port, limit=READ_CHUNK, ssl=tls)
