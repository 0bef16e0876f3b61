"""Log rotation's file logic: rotate, trim, and readers that span rotated files (conmon's part,
reopening the log on its control fifo, is played by the test; the real one is in
tests/api/test_logs_rotation.py)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from berth.common.errors import InvalidParameter
from berth.runtime import logrotate
from berth.runtime.logs import LogReader


def _line(i: int, stream: str = "stdout") -> bytes:
    return f"2026-01-01T00:00:{i % 60:02d}.000000000+00:00 {stream} F line-{i}\n".encode()


class FakeConmon:
    """Appends to the file it has open, and reopens `path` when told (as conmon on `2 0 0`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.f = open(path, "ab")

    def write(self, data: bytes) -> None:
        self.f.write(data)
        self.f.flush()

    def reopen(self) -> None:
        self.f.close()
        tmp = Path(str(self.path) + ".tmp")
        self.f = open(tmp, "wb")
        os.rename(tmp, self.path)


def _rotate(path: Path, max_files: int, conmon: FakeConmon) -> None:
    assert logrotate.rotate(str(path), max_files, "/nonexistent/ctl")
    conmon.write(_line(999))  # written after the rename, before the reopen: lands in `.1`
    conmon.reopen()


def test_reader_spans_rotations_and_follow_misses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    conmon = FakeConmon(path)
    for i in range(3):
        conmon.write(_line(i))
    reader = LogReader(str(path))
    records, offset = reader.read()
    assert [r.data for r in records] == [b"line-0\n", b"line-1\n", b"line-2\n"]

    async def follow() -> list[bytes]:
        stopped = asyncio.Event()
        got: list[bytes] = []

        async def writer() -> None:
            for i in range(3, 9):
                conmon.write(_line(i))
                if i in (4, 6):
                    _rotate(path, 3, conmon)
                if i == 6:  # twice between two polls of the follower
                    _rotate(path, 3, conmon)
                await asyncio.sleep(0.03)
            stopped.set()

        task = asyncio.ensure_future(writer())
        async for r in reader.follow(offset, stopped, interval=0.05):
            got.append(r.data)
        await task
        return got

    got = asyncio.run(follow())
    assert got == [f"line-{i}\n".encode() for i in (3, 4, 999, 5, 6, 999, 999, 7, 8)]
    assert sorted(os.listdir(tmp_path)) == ["ctr.log", "ctr.log.1", "ctr.log.2"]
    # a new reader sees what the two kept rotated files and the current one hold, in order
    assert [r.data for r in LogReader(str(path)).read()[0]] == [f"line-{i}\n".encode()
                                                                for i in (5, 6, 999, 999, 7, 8)]


def test_max_file_1_truncates(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    conmon = FakeConmon(path)
    conmon.write(_line(1))
    assert logrotate.rotate(str(path), 1, "/nonexistent/ctl")
    conmon.reopen()
    conmon.write(_line(2))
    # `.1` is dropped once conmon has reopened (the rotation loop's next look), or at the exit
    logrotate.finish_rotation(str(path), logrotate.LogSettings(1 << 20, 1))
    assert os.listdir(tmp_path) == ["ctr.log"]
    assert [r.data for r in LogReader(str(path)).read()[0]] == [b"line-2\n"]


def test_trim_cuts_an_oversized_file_into_max_size_ones(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    (tmp_path / "ctr.log.2").write_bytes(_line(0))
    big = b"".join(_line(i) for i in range(100, 200))  # lines of one length
    (tmp_path / "ctr.log.1").write_bytes(big)
    path.write_bytes(_line(200))
    size = len(_line(100)) * 10 + 5  # ten lines a file
    logrotate.trim(str(path), size, 4)  # three rotated files kept
    assert sorted(os.listdir(tmp_path)) == ["ctr.log", "ctr.log.1", "ctr.log.2", "ctr.log.3"]
    for name in ("ctr.log.1", "ctr.log.2", "ctr.log.3"):
        assert (tmp_path / name).stat().st_size == size - 5
    assert [r.data for r in LogReader(str(path)).read()[0]] == [f"line-{i}\n".encode() for i in range(170, 201)]


def test_trim_at_exit_keeps_max_file_files_with_the_current_one(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    (tmp_path / "ctr.log.1").write_bytes(_line(99))
    path.write_bytes(b"".join(_line(i) for i in range(100, 200)))
    size = len(_line(100)) * 10
    logrotate.finish_rotation(str(path), logrotate.LogSettings(size, 3))
    assert sorted(os.listdir(tmp_path)) == ["ctr.log", "ctr.log.1", "ctr.log.2"]
    assert [r.data for r in LogReader(str(path)).read()[0]] == [f"line-{i}\n".encode() for i in range(170, 200)]


def test_exit_between_rename_and_reopen_keeps_a_current_log(tmp_path: Path) -> None:
    """The container exited after a rotation's rename but before conmon reopened: `.1` holds the
    newest lines; at exit they become the current log again, cut to max-size as usual."""
    path = tmp_path / "ctr.log"
    (tmp_path / "ctr.log.2").write_bytes(_line(99))
    (tmp_path / "ctr.log.1").write_bytes(b"".join(_line(i) for i in range(100, 200)))
    size = len(_line(100)) * 10
    logrotate.finish_rotation(str(path), logrotate.LogSettings(size, 3))
    assert sorted(os.listdir(tmp_path)) == ["ctr.log", "ctr.log.1", "ctr.log.2"]
    assert [r.data for r in LogReader(str(path)).read()[0]] == [f"line-{i}\n".encode() for i in range(170, 200)]


def test_max_file_1_exit_before_reopen_keeps_the_last_lines(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    (tmp_path / "ctr.log.1").write_bytes(b"".join(_line(i) for i in range(100, 200)))  # renamed, not reopened
    size = len(_line(100)) * 10
    logrotate.finish_rotation(str(path), logrotate.LogSettings(size, 1))
    assert sorted(os.listdir(tmp_path)) == ["ctr.log"]
    assert [r.data for r in LogReader(str(path)).read()[0]] == [f"line-{i}\n".encode() for i in range(190, 200)]


def test_settings_and_details_as_dockerd() -> None:
    assert logrotate.log_settings("json-file", {"max-size": "10k", "max-file": "3"}) == logrotate.LogSettings(10000, 3)
    assert logrotate.log_settings("json-file", {"max-file": "3"}).max_size is None
    assert logrotate.log_settings("local", {}) == logrotate.LogSettings(20_000_000, 5)
    for opts, message in (({"max-size": "abc"}, "invalid size: 'abc'"),
                          ({"max-size": "0"}, "max-size must be a positive number"),
                          ({"max-size": "1k", "max-file": "0"}, "max-file cannot be less than 1"),
                          ({"max-file": "x"}, 'strconv.Atoi: parsing "x": invalid syntax'),
                          ({"compress": "true", "max-size": "1k"},
                           "compress cannot be true when max-file is less than 2 or max-size is not set")):
        with pytest.raises(InvalidParameter) as e:
            logrotate.log_settings("json-file", opts)
        assert e.value.message == "failed to initialize logging driver: " + message
    with pytest.raises(InvalidParameter, match="unknown log opt 'bogus' for json-file log driver"):
        logrotate.check_log_opts("json-file", {"bogus": "1"})
    with pytest.raises(InvalidParameter, match="unknown log opt 'env' for log driver local"):
        logrotate.check_log_opts("local", {"env": "A"})
    attrs = logrotate.extra_attributes({"labels": "com.x,missing", "env": "FOO,NOPE"}, {"com.x": "y z", "b": "1"},
                                  ["FOO=bar", "PATH=/bin"])
    assert logrotate.details_prefix(attrs) == b"FOO=bar,com.x=y+z "
    assert logrotate.details_prefix({}) == b" "
