"""build_spec's output is accepted by runc and does what it says inside the container."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from berth.runtime.capabilities import ALL_CAPS, DEFAULT_CAPS, host_capabilities
from berth.runtime.etcfiles import write_etc_files
from berth.runtime.spec import SpecOptions, build_spec, container_env

pytestmark = pytest.mark.root

RUNC = "/usr/sbin/runc"
BUSYBOX = shutil.which("busybox") or "/usr/bin/busybox"
CGROUP_PARENT = "berth-test"
CGROUP_ROOT = Path("/sys/fs/cgroup")


@pytest.fixture(scope="module", autouse=True)
def _need_root_and_runc() -> None:
    if os.geteuid() != 0 or not os.access(RUNC, os.X_OK) or not os.path.exists(BUSYBOX):
        pytest.skip("needs root, runc and a static busybox")


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    rootfs = tmp_path / "bundle/rootfs"
    for d in ("bin", "etc", "proc", "sys", "dev", "tmp"):
        (rootfs / d).mkdir(parents=True)
    shutil.copy(BUSYBOX, rootfs / "bin/busybox")
    for applet in ("sh", "cat", "grep", "ls", "id", "hostname"):  # never one named busybox
        os.symlink("busybox", rootfs / "bin" / applet)
    (rootfs / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    return tmp_path / "bundle"


@pytest.fixture
def state_root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "runc-root"
    root.mkdir()
    yield root
    for leaf in CGROUP_ROOT.glob(f"*/{CGROUP_PARENT}"):  # runc removes the containers' own dirs
        try:
            leaf.rmdir()
        except OSError:
            pass


def run(bundle: Path, state_root: Path, script: str, **kw: Any) -> tuple[int, str]:
    cid = "berth-spec-" + uuid.uuid4().hex[:12]
    container_dir = bundle / "c"
    container_dir.mkdir(exist_ok=True)
    etc = write_etc_files(str(container_dir), hostname="spectest")
    opts = SpecOptions(
        container_id=cid,
        rootfs=str(bundle / "rootfs"),
        args=["/bin/sh", "-c", script],
        env=container_env([], [], "spectest", False),
        hostname="spectest",
        mounts=etc,
        cgroups_path=f"/{CGROUP_PARENT}/{cid}",
        **kw,
    )
    (bundle / "config.json").write_text(json.dumps(build_spec(opts)))
    try:
        p = subprocess.run(
            [RUNC, "--root", str(state_root), "run", "--bundle", str(bundle), cid],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        subprocess.run([RUNC, "--root", str(state_root), "delete", "--force", cid], capture_output=True)
    assert not p.stderr.strip() or p.returncode == 0, p.stderr
    return p.returncode, p.stdout


def caps_mask(caps: list[str]) -> str:
    return format(sum(1 << ALL_CAPS.index(c) for c in caps), "016x")


def test_default_container(bundle: Path, state_root: Path) -> None:
    code, out = run(
        bundle,
        state_root,
        "grep -E '^(CapEff|CapBnd|Seccomp|NoNewPrivs):' /proc/self/status;"
        " ls /sys/class/net; hostname; cat /etc/hostname; id -u",
    )
    assert code == 0, out
    lines = out.split()
    status = dict(zip(lines[0:8:2], lines[1:8:2], strict=True))
    assert status["CapEff:"] == caps_mask(list(DEFAULT_CAPS))
    assert status["CapBnd:"] == caps_mask(list(DEFAULT_CAPS))
    assert status["Seccomp:"] == "2"
    assert lines[8:] == ["lo", "spectest", "spectest", "0"]  # --network none: loopback only


def test_seccomp_follows_capabilities(bundle: Path, state_root: Path) -> None:
    # the default profile allows unshare(2) only to a container holding CAP_SYS_ADMIN
    script = "unshare -u true 2>/dev/null && echo allowed || echo denied; grep Seccomp: /proc/self/status"
    assert run(bundle, state_root, script) == (0, "denied\nSeccomp:\t2\n")
    assert run(bundle, state_root, script, cap_add=["SYS_ADMIN"]) == (0, "allowed\nSeccomp:\t2\n")
    assert run(bundle, state_root, script, seccomp="unconfined") == (0, "denied\nSeccomp:\t0\n")  # no cap


def test_privileged_and_limits(bundle: Path, state_root: Path) -> None:
    script = (
        "grep -E '^(CapEff|Seccomp):' /proc/self/status; cat /proc/self/oom_score_adj;"
        " grep 'open files' /proc/self/limits; ls /dev/kmsg; cd /sys/fs/cgroup;"
        " cat memory/memory.limit_in_bytes pids/pids.max cpu/cpu.cfs_quota_us;"
        " mkdir pids/sub && rmdir pids/sub && echo rw"
    )
    code, out = run(
        bundle,
        state_root,
        script,
        privileged=True,
        oom_score_adj=100,
        ulimits=[{"Name": "nofile", "Soft": 512, "Hard": 1024}],
        memory=64 << 20,
        pids_limit=50,
        nano_cpus=500_000_000,
    )
    assert code == 0, out
    words = out.split()
    assert words[:4] == [
        "CapEff:",
        caps_mask(sorted(host_capabilities(), key=ALL_CAPS.index)),
        "Seccomp:",
        "0",
    ]
    assert words[4] == "100"
    assert words[8:10] == ["512", "1024"] and words[11] == "/dev/kmsg"
    assert words[12:15] == [str(64 << 20), "50", "50000"]  # the limits reached the cgroup
    assert words[15] == "rw"  # --privileged: /sys/fs/cgroup is writable


def test_read_only_rootfs_and_user(bundle: Path, state_root: Path) -> None:
    code, out = run(
        bundle,
        state_root,
        "id -u; id -g; grep CapEff /proc/self/status; (echo x > /x) 2>&1 || echo ro",
        uid=1000,
        gid=1000,
        readonly_rootfs=True,
    )
    assert code == 0, out
    words = out.split()
    assert words[:4] == ["1000", "1000", "CapEff:", "0000000000000000"] and words[-1] == "ro"
