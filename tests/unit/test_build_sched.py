"""The stage scheduler: concurrency where stages are independent, output in plan order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from berth.daemon import buildsched


def collect(order: list[int], deps: dict[int, tuple[int, ...]], run, limit: int = 4) -> list[str]:  # type: ignore[no-untyped-def]
    async def main() -> list[str]:
        return [m async for m in buildsched.ordered(order, deps, run, limit)]
    return asyncio.run(main())


def test_output_in_plan_order_while_stages_overlap() -> None:
    events: list[str] = []

    async def run(i: int) -> AsyncIterator[str]:
        events.append(f"start {i}")
        yield f"{i}:first"
        await asyncio.sleep(0.05 if i == 0 else 0.01)
        yield f"{i}:last"
        events.append(f"end {i}")

    out = collect([0, 1, 2], {2: (0, 1)}, run)
    assert out == ["0:first", "0:last", "1:first", "1:last", "2:first", "2:last"]
    # 1 started before 0 ended (independent); 2 only after both (its dependencies)
    assert events.index("start 1") < events.index("end 0")
    assert events.index("start 2") > max(events.index("end 0"), events.index("end 1"))


def test_limit_one_is_sequential() -> None:
    events: list[str] = []

    async def run(i: int) -> AsyncIterator[str]:
        events.append(f"start {i}")
        await asyncio.sleep(0.01)
        events.append(f"end {i}")
        yield str(i)

    assert collect([0, 1], {}, run, limit=1) == ["0", "1"]
    assert events == ["start 0", "end 0", "start 1", "end 1"]


def test_a_failure_cancels_the_others_and_keeps_its_output() -> None:
    cancelled: list[int] = []

    async def run(i: int) -> AsyncIterator[str]:
        try:
            yield f"{i}:begin"
            if i == 1:
                raise ValueError("stage 1 failed")
            await asyncio.sleep(5)
            yield f"{i}:never"
        except asyncio.CancelledError:
            cancelled.append(i)
            raise

    seen: list[str] = []

    async def main() -> None:
        async for m in buildsched.ordered([0, 1, 2], {2: (1,)}, run, 4):
            seen.append(m)

    with pytest.raises(ValueError, match="stage 1 failed"):
        asyncio.run(asyncio.wait_for(main(), 2))
    assert seen == ["0:begin", "1:begin"]
    assert cancelled == [0]  # stage 2 never started: its dependency failed
