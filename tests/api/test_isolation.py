"""Resource limits and the security defaults, checked from inside containers via the docker CLI
(the acceptance checks of the isolation issue)."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

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


KEYCTL_PROBE = r"""
#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>
/* exit status: the errno of keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING), 0 when allowed */
int main(void) { return syscall(SYS_keyctl, 0, -3L, 0L) < 0 ? errno : 0; }
"""


def test_default_seccomp_blocks_keyctl(berthd: Daemon, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """busybox has no keyctl applet: a static probe (gcc, from make test's packages) makes the call."""
    import shutil
    import subprocess

    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed (make test installs it)")
    (tmp_path / "probe.c").write_text(KEYCTL_PROBE)
    subprocess.run(["gcc", "-static", "-O2", "-o", str(tmp_path / "probe"), str(tmp_path / "probe.c")], check=True)
    mount = f"{tmp_path / 'probe'}:/probe:ro"
    assert docker(berthd, "run", "--rm", "-v", mount, "busybox", "/probe", check=False).returncode == 1  # EPERM
    assert docker(berthd, "run", "--rm", "--privileged", "-v", mount, "busybox", "/probe", check=False).returncode == 0


def test_read_only_root_with_tmpfs(berthd: Daemon) -> None:
    out = docker(berthd, "run", "--rm", "--read-only", "--tmpfs", "/tmp", "busybox", "sh", "-c",
                 "touch /tmp/ok && echo tmp-ok; touch /root/x", check=False)
    assert out.stdout == "tmp-ok\n" and "Read-only file system" in out.stderr


def _cpu_usage_ns(cid: str) -> int:
    """The container cgroup's CPU time so far: cgroup v1's cpuacct, or v2's cpu.stat."""
    v1 = f"/sys/fs/cgroup/cpuacct/berth/{cid}/cpuacct.usage"
    if os.path.exists(v1):
        with open(v1) as f:
            return int(f.read())
    with open(f"/sys/fs/cgroup/berth/{cid}/cpu.stat") as f:
        usage = next(line for line in f if line.startswith("usage_usec"))
    return int(usage.split()[1]) * 1000


def test_cpus_holds_a_busy_loop_near_its_share(berthd: Daemon) -> None:
    name = f"cpu-{uuid.uuid4().hex[:6]}"
    try:
        cid = docker(berthd, "run", "-d", "--name", name, "--cpus", "0.2", "busybox", "sh", "-c",
                     "while :; do :; done").stdout.strip()
        assert docker(berthd, "inspect", "-f", "{{.HostConfig.NanoCpus}}", name).stdout.strip() == "200000000"
        time.sleep(0.2)
        used0, t0 = _cpu_usage_ns(cid), time.monotonic()
        time.sleep(1.5)
        share = (_cpu_usage_ns(cid) - used0) / ((time.monotonic() - t0) * 1e9)
        # CFS quota: 20 ms per 100 ms period; a loaded 2-core machine may give it less, never more
        assert 0.05 < share < 0.3, share
    finally:
        docker(berthd, "rm", "-f", name, check=False)


def test_init_is_pid_1_reaps_orphans_and_forwards_signals(berthd: Daemon) -> None:
    name = f"init-{uuid.uuid4().hex[:6]}"
    try:
        # the subshell's sleep is orphaned to PID 1 (the exec'ed `sleep 30` would never reap it)
        docker(berthd, "run", "-d", "--init", "--name", name, "busybox", "sh", "-c",
               "(sleep 0.1 &); exec sleep 30")
        time.sleep(0.6)
        ps = docker(berthd, "exec", name, "ps", "-o", "pid,stat,comm").stdout
        pid1 = next(line.split() for line in ps.splitlines() if line.split()[0] == "1")
        assert pid1[-1] == "docker-init"
        assert " Z " not in ps, ps
        t0 = time.monotonic()
        docker(berthd, "stop", name)  # SIGTERM reaches `sleep` through the init: no 10 s grace
        assert time.monotonic() - t0 < 5
        assert docker(berthd, "inspect", "-f", "{{.HostConfig.Init}} {{.State.ExitCode}}", name).stdout.split() == [
            "true", "143"]
    finally:
        docker(berthd, "rm", "-f", name, check=False)


def test_device_and_its_cgroup_permissions(berthd: Daemon) -> None:
    # /dev/full (1:7) is outside docker's default device rules, so the flag's permissions rule
    out = docker(berthd, "run", "--rm", "--device", "/dev/full:/dev/xfull:rwm", "busybox", "sh", "-c",
                 "stat -c '%t:%T %F' /dev/xfull; echo hi > /dev/xfull", check=False)
    assert out.stdout == "1:7 character special file\n" and "No space left on device" in out.stderr
    # runc always allows the nodes it makes itself (/dev/full among them): /dev/kmsg it does not
    wo = docker(berthd, "run", "--rm", "--device", "/dev/kmsg:/dev/xkmsg:w", "busybox", "sh", "-c",
                "echo berth-device-test > /dev/xkmsg && echo wrote; cat /dev/xkmsg", check=False)
    assert wo.stdout == "wrote\n" and "Operation not permitted" in wo.stderr
    name = f"dev-{uuid.uuid4().hex[:6]}"
    try:
        docker(berthd, "create", "--name", name, "--device", "/dev/nosuch", "busybox", "true")
        missing = docker(berthd, "start", name, check=False)
        assert missing.returncode == 1
        assert 'error gathering device information while adding custom device "/dev/nosuch"' in missing.stderr
    finally:
        docker(berthd, "rm", "-f", name, check=False)


def test_namespaced_sysctls_only(berthd: Daemon) -> None:
    out = docker(berthd, "run", "--rm", "--sysctl", "net.ipv4.ip_forward=1", "--sysctl", "kernel.shmmni=1234",
                 "busybox", "cat", "/proc/sys/net/ipv4/ip_forward", "/proc/sys/kernel/shmmni")
    assert out.stdout.split() == ["1", "1234"]
    with open("/proc/sys/kernel/shmmni") as f:
        assert f.read().strip() != "1234"  # the host's own stays as it was
    refused = docker(berthd, "run", "--rm", "--sysctl", "vm.swappiness=1", "busybox", "true", check=False)
    assert refused.returncode == 125 and "sysctl 'vm.swappiness=1' is not allowed" in refused.stderr
    # through the API (the CLI checks first, as docker's): the runtime refuses it at start
    status, body = berthd.request("POST", "/containers/create", {
        "Image": "busybox", "Cmd": ["true"], "HostConfig": {"Sysctls": {"vm.swappiness": "1"}}})
    cid = json.loads(body)["Id"]
    try:
        status, body = berthd.request("POST", f"/containers/{cid}/start")
        assert status >= 400 and 'sysctl "vm.swappiness" is not in a separate kernel namespace' in json.loads(
            body)["message"]
    finally:
        berthd.request("DELETE", f"/containers/{cid}?force=1")
    name = f"sysctl-{uuid.uuid4().hex[:6]}"
    try:
        # create + start: a failed `run` leaves the CLI's attach for rm to wait out (5 s)
        docker(berthd, "create", "--name", name, "--network", "host", "--sysctl", "net.ipv4.ip_forward=1",
               "busybox", "true")
        host = docker(berthd, "start", name, check=False)
        assert host.returncode != 0 and "not allowed in the host network namespace" in host.stderr
    finally:
        docker(berthd, "rm", "-f", name, check=False)


def _ns(berthd: Daemon, kind: str, *opts: str) -> str:
    return docker(berthd, "run", "--rm", *opts, "busybox", "readlink", f"/proc/self/ns/{kind}").stdout.strip()


def test_pid_ipc_uts_modes_and_domainname(berthd: Daemon) -> None:
    """--pid/--ipc/--uts host share the host's namespaces; `container:` joins another's (its /dev/shm
    too, when it is shareable); a private one is refused as a donor, as by dockerd."""
    for kind, opt in (("pid", "--pid"), ("ipc", "--ipc"), ("uts", "--uts")):
        assert _ns(berthd, kind, opt, "host") == os.readlink(f"/proc/self/ns/{kind}")
        assert _ns(berthd, kind) != os.readlink(f"/proc/self/ns/{kind}")
    assert docker(berthd, "run", "--rm", "--uts", "host", "busybox", "hostname").stdout.strip() == os.uname().nodename
    out = docker(berthd, "run", "--rm", "-h", "box", "--domainname", "example.org", "busybox", "sh", "-c",
                 "hostname; cat /proc/sys/kernel/domainname").stdout.split()
    assert out == ["box", "example.org"]
    assert "/dev/shm" not in docker(berthd, "run", "--rm", "--ipc", "none", "busybox", "cat", "/proc/mounts").stdout

    donor, private = f"ipc-{uuid.uuid4().hex[:6]}", f"ipc-{uuid.uuid4().hex[:6]}"
    try:
        docker(berthd, "run", "-d", "--name", donor, "--ipc", "shareable", "busybox", "sh", "-c",
               "echo shared > /dev/shm/note; exec sleep 100")
        docker(berthd, "run", "-d", "--name", private, "busybox", "sleep", "100")
        docker(berthd, "exec", donor, "test", "-f", "/dev/shm/note")
        joined = docker(berthd, "run", "--rm", "--ipc", f"container:{donor}", "--pid", f"container:{donor}",
                        "busybox", "sh", "-c", "cat /dev/shm/note; readlink /proc/self/ns/ipc; ps -o comm").stdout
        own = docker(berthd, "exec", donor, "readlink", "/proc/self/ns/ipc").stdout
        assert joined.splitlines()[:2] == ["shared", own.strip()]
        assert "sleep" in joined.splitlines()[2:], joined  # the donor's processes are visible
        refused = docker(berthd, "run", "--rm", "--ipc", f"container:{private}", "busybox", "true", check=False)
        assert refused.returncode != 0 and "non-shareable IPC" in refused.stderr
        bad = docker(berthd, "run", "--rm", "--ipc", "bogus", "busybox", "true", check=False)
        assert bad.returncode != 0 and "invalid IPC mode: bogus" in bad.stderr
        assert docker(berthd, "inspect", "-f", "{{.HostConfig.IpcMode}}", private).stdout.strip() == "private"
    finally:
        docker(berthd, "rm", "-f", donor, private, check=False)


def test_cgroupns_and_cgroup_parent(berthd: Daemon) -> None:
    own = os.readlink("/proc/self/ns/cgroup")
    assert _ns(berthd, "cgroup") == own  # docker 20.10's default on cgroup v1: the host's
    assert _ns(berthd, "cgroup", "--cgroupns", "private") != own
    inside = docker(berthd, "run", "--rm", "--cgroupns", "private", "busybox", "cat", "/proc/self/cgroup").stdout
    assert all(line.endswith(":/") for line in inside.splitlines() if ":memory:" in line), inside

    parent = f"berth-test-parent-{uuid.uuid4().hex[:6]}"
    name = f"cgp-{uuid.uuid4().hex[:6]}"
    try:
        docker(berthd, "run", "-d", "--name", name, "--cgroup-parent", parent, "busybox", "sleep", "100")
        cid = docker(berthd, "inspect", "-f", "{{.Id}}", name).stdout.strip()
        pid = docker(berthd, "inspect", "-f", "{{.State.Pid}}", name).stdout.strip()
        with open(f"/proc/{pid}/cgroup") as f:
            assert f"/{parent}/{cid}" in f.read()
        stats = json.loads(docker(berthd, "stats", "--no-stream", "--format", "{{json .}}", name).stdout)
        assert stats["MemUsage"].split("/")[0].strip() not in ("", "0B"), stats  # read from that cgroup
    finally:
        docker(berthd, "rm", "-f", name, check=False)
        for d in Path("/sys/fs/cgroup").glob(f"*/{parent}"):
            d.rmdir()
    status, out = berthd.request("POST", "/containers/create", {"Image": "busybox",
                                                                 "HostConfig": {"CgroupnsMode": "shared"}})
    assert status == 400 and b"invalid cgroup namespace mode: shared" in out, out
