"""logwatch: one inotify instance wakes every follower of a directory when a file there is
written, created or renamed into it."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from berth.runtime import logwatch


def test_followers_wake_on_writes_and_renames(tmp_path: Path) -> None:
    async def main() -> None:
        log = tmp_path / "ctr.log"
        log.write_bytes(b"")
        a, b = logwatch.subscribe(str(tmp_path)), logwatch.subscribe(str(tmp_path))
        assert a is not None and b is not None
        with open(log, "ab") as f:
            f.write(b"line\n")
            f.flush()
        await asyncio.wait_for(asyncio.gather(a.wait(), b.wait()), 2)
        a.clear()
        logwatch.unsubscribe(str(tmp_path), b)
        os.rename(log, tmp_path / "ctr.log.1")  # a rotation
        await asyncio.wait_for(a.wait(), 2)
        a.clear()
        (tmp_path / "elsewhere").mkdir()
        other = logwatch.subscribe(str(tmp_path / "elsewhere"))
        assert other is not None
        await asyncio.sleep(0.05)
        a.clear()  # making the directory was a change here
        (tmp_path / "elsewhere" / "x").write_bytes(b"1")
        await asyncio.wait_for(other.wait(), 2)
        assert not a.is_set()  # another directory's write is not this one's
        logwatch.unsubscribe(str(tmp_path), a)
        logwatch.unsubscribe(str(tmp_path / "elsewhere"), other)
        assert logwatch.subscribe(str(tmp_path / "missing")) is None  # then the follower polls

    asyncio.run(main())
