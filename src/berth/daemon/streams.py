"""Bytes produced by blocking code in a worker thread, consumed as an async iterator on the loop
(save, export, `cp` out of a container): bounded memory, and the producer stops when the client goes."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any


class PipeWriter:
    """A file-like writer whose bytes come out of an asyncio queue on the loop side."""

    def __init__(self, loop: asyncio.AbstractEventLoop, q: asyncio.Queue[bytes | None]):
        self._loop = loop
        self._q = q
        self._buf = bytearray()
        self._room = threading.Semaphore(8)  # bound memory: at most 8 chunks in flight
        self._cancelled = False

    def cancel(self) -> None:
        """The reader went away (client disconnected): make the producer stop."""
        self._cancelled = True
        for _ in range(8):
            self._room.release()

    def write(self, data: bytes) -> int:
        if self._cancelled:
            raise BrokenPipeError("the client went away")
        self._buf += data
        if len(self._buf) >= 1 << 20:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._buf:
            self._room.acquire()
            self._loop.call_soon_threadsafe(self._q.put_nowait, bytes(self._buf))
            self._buf.clear()

    def release(self) -> None:
        self._room.release()


def stream_from_thread(produce: Callable[[Any], None]) -> AsyncIterator[bytes]:
    async def gen() -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[bytes | None] = asyncio.Queue()
        w = PipeWriter(loop, q)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                produce(w)
                w.flush()
            except BaseException as e:  # noqa: BLE001 - handed to the loop side
                errors.append(e)
            finally:
                loop.call_soon_threadsafe(q.put_nowait, None)

        fut = loop.run_in_executor(None, run)
        try:
            while True:
                chunk = await q.get()
                if chunk is None:
                    break
                w.release()
                yield chunk
        finally:
            if not fut.done():
                w.cancel()
        await fut
        if errors:
            raise errors[0]

    return gen()


