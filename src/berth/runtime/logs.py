"""Read container logs as conmon writes them (the k8s-file format).

Each line is `<RFC3339Nano timestamp> <stdout|stderr> <P|F> <content>`; `P` marks a partial
line whose rest follows in the next record. Docker's json-file driver semantics (since, until,
tail, timestamps, follow) are applied on top.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime


@dataclass
class LogRecord:
    stream: str          # "stdout" | "stderr"
    timestamp: str       # RFC3339Nano as conmon wrote it
    data: bytes          # the line, with its newline unless it was partial at exit


def parse_time(ts: str) -> float:
    """RFC3339Nano (with offset or Z) -> unix seconds, keeping sub-second precision."""
    main, _, frac = ts.partition(".")
    tz = ""
    if frac:
        digits = ""
        for i, ch in enumerate(frac):
            if ch.isdigit():
                digits += ch
            else:
                tz = frac[i:]
                break
        frac_val = float("0." + digits) if digits else 0.0
    else:
        frac_val = 0.0
        if main.endswith("Z"):
            main, tz = main[:-1], "Z"
        elif len(main) > 19:
            main, tz = main[:19], main[19:]
    if tz in ("Z", ""):
        tz = "+00:00"
    dt = datetime.fromisoformat(main + tz)
    return dt.timestamp() + frac_val


def docker_timestamp(ts: str) -> str:
    """conmon's `2026-11-29T04:22:17.374369257+00:00` -> docker's `...374369257Z`."""
    return ts[:-6] + "Z" if ts.endswith("+00:00") else ts


def _parse(data: bytes, flush: bool) -> tuple[list[LogRecord], int]:
    """The records in `data` and how many of its bytes they used up. A line still being
    written, and a partial (`P`) line whose rest has not come, are left for the next read;
    with `flush` (the container has stopped) the partial line is a record of its own, without
    a newline, as docker shows output that did not end in one."""
    records: list[LogRecord] = []
    partial: dict[str, LogRecord] = {}
    pos = used = n_used = 0
    for raw in data.splitlines(keepends=True):
        if not raw.endswith(b"\n"):
            break  # an incomplete record: conmon is still writing it
        pos += len(raw)
        parts = raw[:-1].split(b" ", 3)
        if len(parts) >= 3:
            ts, stream, tag = parts[0].decode(), parts[1].decode(), parts[2]
            content = parts[3] if len(parts) > 3 else b""
            head = partial.pop(stream, None)
            if head is not None:
                ts, content = head.timestamp, head.data + content
            if tag == b"P":
                partial[stream] = LogRecord(stream, ts, content)
            else:
                records.append(LogRecord(stream, ts, content + b"\n"))
        if not partial:
            used, n_used = pos, len(records)
    if not partial:
        return records, used
    if flush:
        return records + list(partial.values()), pos
    # What follows the first open partial line is read again, with its rest, next time.
    return records[:n_used], used


class LogReader:
    def __init__(self, path: str):
        self.path = path

    def read(self, *, since: float = 0, until: float = 0, tail: int = -1,
             streams: tuple[str, ...] = ("stdout", "stderr"), offset: int = 0,
             flush: bool = False) -> tuple[list[LogRecord], int]:
        """Records in the file from `offset`; returns them and the offset after the last whole one.
        `flush`: the writer has stopped, so a trailing partial line is a record too."""
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return [], offset
        with f:
            f.seek(offset)
            data = f.read()
        records, end = _parse(data, flush)
        records = [r for r in records if r.stream in streams]
        if since or until:
            records = [r for r in records if (not since or parse_time(r.timestamp) > since)
                       and (not until or parse_time(r.timestamp) <= until)]
        if tail >= 0:
            records = records[-tail:] if tail else []
        return records, offset + end

    def size(self) -> int:
        try:
            return os.path.getsize(self.path)
        except FileNotFoundError:
            return 0

    async def follow(self, offset: int, stopped: asyncio.Event, *,
                     streams: tuple[str, ...] = ("stdout", "stderr"),
                     until: float = 0, interval: float = 0.1, raw: bool = False) -> AsyncIterator[LogRecord]:
        """New records from `offset` until `stopped` is set and the file is drained. Polls, but
        wakes at once when the container stops, so the last lines are never late. `raw` (attach)
        passes partial lines on as they come: a shell's prompt has no newline."""
        while True:
            done = stopped.is_set()
            records, offset = self.read(offset=offset, streams=streams, until=until, flush=done or raw)
            for r in records:
                yield r
            if done:
                return
            try:
                await asyncio.wait_for(stopped.wait(), interval)
            except TimeoutError:
                pass
