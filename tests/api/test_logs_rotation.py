"""json-file log rotation (`--log-opt max-size/max-file`) and `logs --details`, with the real
docker CLI: rotated files are read in order, a follower misses nothing across rotations, a burst
before exit is cut to max-size files, rotation goes on after a berthd restart, and bad options
get dockerd's errors."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable

import pytest

from ..conftest import Daemon
from .test_docker_cli import DOCKER, docker

pytestmark = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")

ROTATE = ["--log-opt", "max-size=1k", "--log-opt", "max-file=3"]


def _writer(count: int, pause: str = "") -> list[str]:
    sleep = f"sleep {pause}; " if pause else ""
    return ["sh", "-c", f"i=0; while [ $i -lt {count} ]; do echo line-$i; {sleep}i=$((i+1)); done"]


def _log_files(d: Daemon, name: str) -> dict[str, int]:
    cid = docker(d, "inspect", "-f", "{{.Id}}", name).stdout.strip()
    cdir = os.path.join(d.root, "data", "containers", cid)
    return {f: os.path.getsize(os.path.join(cdir, f)) for f in os.listdir(cdir) if f.startswith("ctr.log")}


def _settled_files(d: Daemon, name: str, want: int) -> dict[str, int]:
    """The log files once the exit's cut is done (berthd does it just after the last reader)."""
    deadline = time.time() + 5
    while True:
        files = _log_files(d, name)
        if len(files) == want and all(size <= 1000 for size in files.values()) or time.time() > deadline:
            return files
        time.sleep(0.05)


def _assert_suffix(lines: list[str], last: int) -> None:
    """The newest lines, none missing or repeated: line-k .. line-last."""
    first = last - len(lines) + 1
    assert lines == [f"line-{i}" for i in range(first, last + 1)], lines[:5]


@pytest.fixture
def name() -> str:
    return f"lr-{uuid.uuid4().hex[:8]}"


def test_follow_across_rotations_and_files_kept(berthd: Daemon, name: str) -> None:
    docker(berthd, "run", "-d", "--name", name, *ROTATE, "busybox", *_writer(300, "0.005"))
    try:
        followed = docker(berthd, "logs", "-f", name).stdout.splitlines()
        assert followed == [f"line-{i}" for i in range(300)]  # every line once, in order
        docker(berthd, "wait", name)
        files = _settled_files(berthd, name, 3)
        assert set(files) <= {"ctr.log", "ctr.log.1", "ctr.log.2"} and len(files) >= 2, files
        assert all(size <= 1000 for size in files.values()), files
        kept = docker(berthd, "logs", name).stdout.splitlines()
        assert len(kept) > 1000 // 60  # more than one file's worth (a line is ~54 bytes)
        _assert_suffix(kept, 299)
        assert docker(berthd, "logs", "--tail", "2", name).stdout == "line-298\nline-299\n"
    finally:
        docker(berthd, "rm", "-f", name, check=False)


def test_burst_before_exit_is_cut_to_max_size_files(berthd: Daemon, name: str) -> None:
    docker(berthd, "run", "--name", name, *ROTATE, "busybox", *_writer(100))
    try:
        files = _settled_files(berthd, name, 3)
        assert sorted(files) == ["ctr.log", "ctr.log.1", "ctr.log.2"], files
        assert all(size <= 1000 for size in files.values()), files
        _assert_suffix(docker(berthd, "logs", name).stdout.splitlines(), 99)
        one = docker(berthd, "run", "--name", name + "-1", "--log-opt", "max-size=1k", "--log-opt", "max-file=1",
                     "busybox", *_writer(100))
        assert one.returncode == 0
        assert list(_settled_files(berthd, name + "-1", 1)) == ["ctr.log"]  # max-file=1 truncates
        _assert_suffix(docker(berthd, "logs", name + "-1").stdout.splitlines(), 99)
    finally:
        docker(berthd, "rm", "-f", name, name + "-1", check=False)


def test_rotation_goes_on_after_berthd_restart(fresh_berthd: Callable[..., Daemon], name: str) -> None:
    d = fresh_berthd()
    docker(d, "run", "-d", "--name", name, *ROTATE, "busybox", *_writer(200, "0.01"))
    time.sleep(0.5)
    d.kill9()
    time.sleep(0.5)  # the log outgrows max-size meanwhile: nothing rotates it
    d.start()
    docker(d, "wait", name)
    files = _settled_files(d, name, 3)
    assert sorted(files) == ["ctr.log", "ctr.log.1", "ctr.log.2"], files
    assert all(size <= 1000 for size in files.values()), files
    _assert_suffix(docker(d, "logs", name).stdout.splitlines(), 199)


def test_log_opt_errors_and_details(berthd: Daemon, name: str) -> None:
    for opt, message in (("bogus=1", "unknown log opt 'bogus' for json-file log driver"),
                         ("max-size=abc", "failed to initialize logging driver: invalid size: 'abc'"),
                         ("max-size=0", "failed to initialize logging driver: max-size must be a positive number"),
                         ("max-file=x", 'failed to initialize logging driver: strconv.Atoi: parsing "x": '
                                        "invalid syntax")):
        out = docker(berthd, "run", "--rm", "--log-opt", opt, "busybox", "true", check=False)
        assert out.returncode == 125 and message in out.stderr, (opt, out.stderr)
    try:
        docker(berthd, "run", "--name", name, "-l", "com.x=y z", "-e", "FOO=bar", "--log-opt", "labels=com.x",
               "--log-opt", "env=FOO,NOPE", "busybox", "echo", "hi")
        assert docker(berthd, "logs", "--details", name).stdout == "FOO=bar,com.x=y+z hi\n"
        stamped = docker(berthd, "logs", "--details", "-t", name).stdout
        assert stamped.endswith("Z FOO=bar,com.x=y+z hi\n"), stamped
        docker(berthd, "run", "--name", name + "-plain", "busybox", "echo", "hi")
        assert docker(berthd, "logs", "--details", name + "-plain").stdout == " hi\n"  # dockerd: a lone space
    finally:
        docker(berthd, "rm", "-f", name, name + "-plain", check=False)
