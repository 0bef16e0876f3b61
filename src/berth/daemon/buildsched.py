"""Run a build's stages concurrently where they do not depend on each other; show their output
in plan order.

Each stage starts once the stages it depends on (its FROM, `COPY --from`, `RUN --mount=from=`)
are done, at most `limit` at a time. Output of a stage is passed on live while it is the first
unfinished one in plan order and buffered otherwise, so the stream reads as the sequential
builder's would. The first failure cancels the other stages; its stage's buffered output is
passed on before the error is raised.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
_END = object()


async def ordered(order: Sequence[int], deps: Mapping[int, Sequence[int]],
                  run: Callable[[int], AsyncIterator[T]], limit: int) -> AsyncIterator[T]:
    queues: dict[int, asyncio.Queue[Any]] = {i: asyncio.Queue() for i in order}
    done = {i: asyncio.Event() for i in order}
    failure: asyncio.Future[tuple[int, BaseException]] = asyncio.get_running_loop().create_future()
    slots = asyncio.Semaphore(max(1, limit))

    async def stage(i: int) -> None:
        try:
            for d in deps.get(i, ()):
                await done[d].wait()
            async with slots:
                async for item in run(i):
                    queues[i].put_nowait(item)
            done[i].set()
            queues[i].put_nowait(_END)
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # noqa: BLE001 (handed to the consumer, which raises it)
            if not failure.done():
                failure.set_result((i, e))

    tasks = [asyncio.create_task(stage(i)) for i in order]
    try:
        for i in order:
            while True:
                getter = asyncio.ensure_future(queues[i].get())
                await asyncio.wait({getter, failure}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    failed, exc = failure.result()
                    for t in tasks:
                        t.cancel()
                    for j in dict.fromkeys((i, failed)):
                        while not queues[j].empty():
                            item = queues[j].get_nowait()
                            if item is not _END:
                                yield item
                    raise exc
                item = getter.result()
                if item is _END:
                    break
                yield item
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
