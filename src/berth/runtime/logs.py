"""Read container logs as conmon writes them (the k8s-file format).

Each line is `<RFC3339Nano timestamp> <stdout|stderr> <P|F> <content>`; `P` marks a partial
line whose rest follows in the next record. Docker's json-file driver semantics (since, until,
tail, timestamps, follow) are applied on top. A rotated log (runtime/logrotate.py) is read as
one stream: the rotated files `ctr.log.N` .. `ctr.log.1`, then `ctr.log`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

from . import logwatch


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


class _Cursor:
    """The log as one byte stream across rotations. It holds the file it reads open (a rotation
    renames it, but it stays the same file) and moves on to the file written after it once
    ours is complete."""

    def __init__(self, path: str, f: BinaryIO | None, from_oldest: bool = True) -> None:
        self.path = path
        self.f = f
        self.from_oldest = from_oldest  # with no file yet: begin at the oldest, or the next at `path`
        self.pending = b""   # bytes read but not yet whole records

    def pull(self) -> bytes:
        chunks = [self.pending]
        if self.f is None:
            self.f = _oldest(self.path) if self.from_oldest else _open(self.path)
            if self.f is None:
                return self.pending
        while True:
            chunks.append(self.f.read())
            following = self._following()
            if following is None:
                break
            chunks.append(self.f.read())  # what the writer wrote before it moved on
            self.f.close()
            self.f = following
        return b"".join(chunks)

    def _following(self) -> BinaryIO | None:
        assert self.f is not None
        ours = os.fstat(self.f.fileno()).st_ino
        if _inode(self.path) == ours:
            return None  # the usual case: still the current file
        chain = [*rotated_paths(self.path), self.path]  # oldest first
        inodes = [_inode(p) for p in chain]
        # Ours is complete once a newer file exists (at `.1` while the log's path is missing,
        # conmon may still write to it). It may have moved up several times since the last
        # read; if it is gone, `trim` cut it up (or it was dropped as the oldest), and what
        # follows it is the current file.
        after = chain[inodes.index(ours) + 1:] if ours in inodes else [self.path]
        for p in after:
            f = _open(p)
            if f is not None:
                return f
        return None

    def records(self, flush: bool) -> list[LogRecord]:
        data = self.pull()
        records, used = _parse(data, flush)
        self.pending = data[used:]
        return records

    def close(self) -> None:
        if self.f is not None:
            self.f.close()
            self.f = None


def _open(path: str) -> BinaryIO | None:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        return None


def _inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


def _oldest(path: str) -> BinaryIO | None:
    for p in [*rotated_paths(path), path]:
        f = _open(p)
        if f is not None:
            return f
    return None


def rotated_paths(path: str) -> list[str]:
    """`ctr.log.N` .. `ctr.log.1`: the rotated files, oldest first."""
    d, base = os.path.split(path)
    try:
        names = os.listdir(d or ".")
    except FileNotFoundError:
        return []
    nums = sorted((int(n[len(base) + 1:]) for n in names
                   if n.startswith(base + ".") and n[len(base) + 1:].isdigit()), reverse=True)
    return [f"{path}.{n}" for n in nums]


def _filter(records: list[LogRecord], since: float, until: float,
            streams: tuple[str, ...]) -> list[LogRecord]:
    records = [r for r in records if r.stream in streams]
    if since or until:
        records = [r for r in records if (not since or parse_time(r.timestamp) > since)
                   and (not until or parse_time(r.timestamp) <= until)]
    return records


class LogReader:
    """Reads a container's log, rotated files first. A `read` or `size` leaves the reader where
    it stopped, so a `follow` from the offset it returned goes on from there even if the log
    rotates in between."""

    def __init__(self, path: str):
        self.path = path
        self._cursor: _Cursor | None = None
        self._offset = -1

    def read(self, *, since: float = 0, until: float = 0, tail: int = -1,
             streams: tuple[str, ...] = ("stdout", "stderr"), offset: int = 0,
             flush: bool = False) -> tuple[list[LogRecord], int]:
        """Records from `offset` in the current file (0: from the oldest rotated file); returns
        them and the offset after the last whole one. `flush`: the writer has stopped, so a
        trailing partial line is a record too."""
        self.close()
        if offset:
            f = _open(self.path)
            if f is None:
                return [], offset
            f.seek(offset)
            cursor = _Cursor(self.path, f)
        else:
            cursor = _Cursor(self.path, None)
        records = cursor.records(flush)
        self._cursor = cursor
        self._offset = self._position(cursor)
        records = _filter(records, since, until, streams)
        if tail >= 0:
            records = records[-tail:] if tail else []
        return records, self._offset

    @staticmethod
    def _position(cursor: _Cursor) -> int:
        return cursor.f.tell() - len(cursor.pending) if cursor.f is not None else 0

    def size(self) -> int:
        """The current file's size; a `follow` from it starts after what is there now."""
        self.close()
        f = _open(self.path)
        if f is None:
            self._cursor, self._offset = _Cursor(self.path, None, from_oldest=False), 0
            return 0
        f.seek(0, os.SEEK_END)
        self._cursor = _Cursor(self.path, f)
        self._offset = f.tell()
        return self._offset

    def close(self) -> None:
        if self._cursor is not None:
            self._cursor.close()
            self._cursor = None

    def _cursor_at(self, offset: int) -> _Cursor:
        if self._cursor is not None and offset == self._offset:
            cursor, self._cursor = self._cursor, None
            return cursor
        self.close()
        if not offset:
            return _Cursor(self.path, None)
        f = _open(self.path)
        if f is not None:
            f.seek(offset)
        return _Cursor(self.path, f)

    async def follow(self, offset: int, stopped: asyncio.Event, *,
                     streams: tuple[str, ...] = ("stdout", "stderr"),
                     until: float = 0, interval: float = 0.1, raw: bool = False) -> AsyncIterator[LogRecord]:
        """New records from `offset` until `stopped` is set and the log is drained. Wakes when
        conmon writes (inotify on the log's directory, see logwatch.py) or when the container
        stops, so the last lines are never late; polls every `interval` where inotify is not
        available. `raw` (attach) passes partial lines on as they come: a shell's prompt has no
        newline."""
        cursor = self._cursor_at(offset)
        directory = os.path.dirname(os.path.abspath(self.path))
        written = logwatch.subscribe(directory)
        stop_wait = asyncio.ensure_future(stopped.wait())
        try:
            while True:
                done = stopped.is_set()
                if written is not None:
                    written.clear()  # before reading: a write after this read wakes the next wait
                for r in _filter(cursor.records(flush=done or raw), 0, until, streams):
                    yield r
                if done:
                    return
                if written is None:
                    await asyncio.wait([stop_wait], timeout=interval)
                    continue
                write_wait = asyncio.ensure_future(written.wait())
                try:
                    # the timeout only guards against a missed event (a watch past its limit)
                    await asyncio.wait([stop_wait, write_wait], timeout=max(interval, 5.0),
                                       return_when=asyncio.FIRST_COMPLETED)
                finally:
                    write_wait.cancel()
        finally:
            stop_wait.cancel()
            if written is not None:
                logwatch.unsubscribe(directory, written)
            cursor.close()

