"""Carrying a node's streams to the manager's client: hijacked sockets and blocking iterators."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

from berth.api.http.server import RawStream

T = TypeVar("T")

_END = object()
_splicing: set[asyncio.Task[Any]] = set()


def in_daemon_thread(fn: Callable[[], T]) -> asyncio.Future[T]:
    """Run a blocking call that may last as long as a container (wait, a followed stream) in a
    daemon thread: an executor's threads would hold up the manager's exit until it returns."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if not fut.done():
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)

    def run() -> None:
        try:
            result = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the awaiting task
            loop.call_soon_threadsafe(settle, False, e)
        else:
            loop.call_soon_threadsafe(settle, True, result)

    threading.Thread(target=run, daemon=True, name="node-stream").start()
    return fut


def shutdown_response(resp: Any) -> None:
    """Unblock a thread reading an http.client response: shut its socket down."""
    raw = getattr(getattr(resp, "fp", None), "raw", None)
    sock = getattr(raw, "_sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


async def from_thread(it: Iterator[T], close: Callable[[], None] | None = None) -> AsyncIterator[T]:
    """A blocking iterator read in a daemon thread; `close` unblocks it when the consumer stops."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=64)

    def pump() -> None:
        try:
            for item in it:
                asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()
        except BaseException as e:  # noqa: BLE001 - ends the stream; the consumer sees the end
            if not isinstance(e, (OSError, ValueError)):
                asyncio.run_coroutine_threadsafe(queue.put(e), loop)
        finally:
            try:
                asyncio.run_coroutine_threadsafe(queue.put(_END), loop)
            except RuntimeError:  # the loop is gone
                pass

    threading.Thread(target=pump, daemon=True, name="node-stream").start()
    try:
        while True:
            item = await queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        if close is not None:
            close()


async def splice(client: RawStream, sock: socket.socket, leftover: bytes, stdin: bool = True) -> None:
    """Pump a hijacked connection both ways between the client and a node until the node's side
    ends; the client's half-close (end of stdin) is passed on as a half-close."""
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=sock)

    async def upstream() -> None:
        while True:
            data = await client.read()
            if not data:
                try:
                    if writer.can_write_eof():
                        writer.write_eof()
                except OSError:
                    pass
                return
            writer.write(data)
            await writer.drain()

    # Held strongly while it runs: once the client half-closes, nothing but a cycle (this task, the
    # node reader, which its protocol holds only weakly) refers to it, and the GC would end it.
    me = asyncio.current_task()
    if me is not None:
        _splicing.add(me)
    up = asyncio.get_running_loop().create_task(upstream() if stdin else asyncio.sleep(0))
    try:
        if leftover:
            await client.write(leftover)
        while True:
            data = await reader.read(65536)
            if not data:
                break
            await client.write(data)
    finally:
        _splicing.discard(me)  # type: ignore[arg-type]
        up.cancel()
        writer.close()
