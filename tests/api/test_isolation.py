"""Resource limits and the security defaults, checked from inside containers via the docker CLI
(the acceptance checks of the isolation issue)."""

from __future__ import annotations

import uuid

import pytest

from ..conftest import Daemon
from .test_docker_cli import DOCKER, docker

pytestmark = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")


def test_memory_limit_kill_sets_oomkilled(berthd: Daemon) -> None:
    name = f"oom-{uuid.uuid4().hex[:6]}"
    try:
        docker(berthd, "run", "--name", name, "-m", "32m", "--memory-swap", "32m", "busybox", "sh", "-c",
               "dd if=/dev/zero bs=64M count=1 of=/dev/null", check=False)
        state = docker(berthd, "inspect", "-f", "{{.State.OOMKilled}} {{.State.ExitCode}}", name).stdout.split()
        assert state == ["true", "137"]
        limit = docker(berthd, "inspect", "-f", "{{.HostConfig.Memory}}", name).stdout.strip()
        assert limit == str(32 << 20)
    finally:
        docker(berthd, "rm", "-f", name, check=False)
    ok = f"oom-{uuid.uuid4().hex[:6]}"
    try:
        docker(berthd, "run", "--name", ok, "-m", "32m", "busybox", "true")
        assert docker(berthd, "inspect", "-f", "{{.State.OOMKilled}}", ok).stdout.strip() == "false"
    finally:
        docker(berthd, "rm", "-f", ok, check=False)


def test_pids_limit_stops_a_fork_bomb(berthd: Daemon) -> None:
    out = docker(berthd, "run", "--rm", "--pids-limit", "5", "busybox", "sh", "-c",
                 "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 2 & done; wait", check=False)
    assert "can't fork" in out.stderr
    free = docker(berthd, "run", "--rm", "busybox", "sh", "-c",
                  "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 0.1 & done; wait")
    assert free.stderr == ""


def test_cap_drop_all_stops_chown(berthd: Daemon) -> None:
    assert docker(berthd, "run", "--rm", "busybox", "chown", "1", "/tmp").returncode == 0
    out = docker(berthd, "run", "--rm", "--cap-drop", "ALL", "busybox", "chown", "1", "/tmp", check=False)
    assert out.returncode == 1 and "Operation not permitted" in out.stderr


def test_no_new_privileges(berthd: Daemon) -> None:
    on = docker(berthd, "run", "--rm", "--security-opt", "no-new-privileges", "busybox",
                "grep", "NoNewPrivs", "/proc/self/status")
    assert on.stdout.split() == ["NoNewPrivs:", "1"]
    off = docker(berthd, "run", "--rm", "busybox", "grep", "NoNewPrivs", "/proc/self/status")
    assert off.stdout.split() == ["NoNewPrivs:", "0"]


def test_default_seccomp_blocks_what_privileged_allows(berthd: Daemon) -> None:
    for cmd in ("unshare -m true", "mount -t tmpfs t /tmp", "reboot -f"):
        out = docker(berthd, "run", "--rm", "busybox", "sh", "-c", cmd, check=False)
        assert out.returncode != 0, cmd
        assert "Operation not permitted" in out.stderr or "permission denied" in out.stderr, (cmd, out.stderr)
    out = docker(berthd, "run", "--rm", "--privileged", "busybox", "sh", "-c",
                 "unshare -m true && mount -t tmpfs t /tmp && grep -c ' /tmp tmpfs' /proc/mounts")
    assert out.stdout == "1\n"


def test_read_only_root_with_tmpfs(berthd: Daemon) -> None:
    out = docker(berthd, "run", "--rm", "--read-only", "--tmpfs", "/tmp", "busybox", "sh", "-c",
                 "touch /tmp/ok && echo tmp-ok; touch /root/x", check=False)
    assert out.stdout == "tmp-ok\n" and "Read-only file system" in out.stderr
