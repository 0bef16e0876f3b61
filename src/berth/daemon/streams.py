"""Items produced by blocking code in a worker thread, consumed as an async iterator on the loop
(save, export, `cp` out of a container, pull/push progress): the producer stops when the client goes,
and byte streams keep bounded memory."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

T = TypeVar("T")
CHUNK = 1 << 20
_DONE = object()


def from_thread(work: Callable[[Callable[[T], None]], None], in_flight: int = 0) -> AsyncIterator[T]:
    """Run `work(emit)` in a worker thread and yield what it emits, in order. With `in_flight`, at
    most that many items wait unconsumed (the producer blocks). When the consumer stops early, the
    next `emit` raises BrokenPipeError. An error from `work` is raised here after the items before
    it, so one raised before any item can still become the HTTP error."""

    async def gen() -> AsyncIterator[T]:
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[Any] = asyncio.Queue()
        errors: list[BaseException] = []
        cancelled = threading.Event()
        room = threading.Semaphore(in_flight) if in_flight else None

        def emit(item: T) -> None:
            if room is not None:
                room.acquire()
            if cancelled.is_set():
                raise BrokenPipeError("the client went away")
            loop.call_soon_threadsafe(q.put_nowait, item)

        def run() -> None:
            try:
                work(emit)
            except BaseException as e:  # noqa: BLE001 - handed to the loop side
                errors.append(e)
            finally:
                loop.call_soon_threadsafe(q.put_nowait, _DONE)

        fut = loop.run_in_executor(None, run)
        try:
            while (item := await q.get()) is not _DONE:
                if room is not None:
                    room.release()
                yield item
        finally:
            if not fut.done():
                cancelled.set()
                if room is not None:  # unblock a producer waiting for room
                    for _ in range(in_flight):
                        room.release()
        await fut
        if errors:
            raise errors[0]

    return gen()


class _ChunkWriter:
    """A file-like writer that emits its bytes in chunks of about CHUNK."""

    def __init__(self, emit: Callable[[bytes], None]) -> None:
        self._emit = emit
        self._buf = bytearray()

    def write(self, data: bytes) -> int:
        self._buf += data
        if len(self._buf) >= CHUNK:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._buf:
            self._emit(bytes(self._buf))
            self._buf.clear()


def stream_from_thread(produce: Callable[[Any], None]) -> AsyncIterator[bytes]:
    """`produce(out)` writes to a file-like `out`; its bytes are yielded, 8 MiB in flight at most."""

    def work(emit: Callable[[bytes], None]) -> None:
        out = _ChunkWriter(emit)
        produce(out)
        out.flush()

    return from_thread(work, in_flight=8)
