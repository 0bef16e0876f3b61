"""`berthd --userns-remap`: containers run in a user namespace mapped to the dockremap user's
subordinate IDs, checked from the host's /proc and file system, through the docker CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import Daemon, busybox_tar, network_args, stop_daemon
from .test_docker_cli import DOCKER, docker
from .test_volumes import _image_with_volume

pytestmark = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")


def _daemon_dir() -> str:
    root = tempfile.mkdtemp(prefix="bt-", dir="/tmp")
    os.chmod(root, 0o711)  # the remapped root must get through to the data root, as with dockerd
    return root


@pytest.fixture(scope="module")
def remapped() -> Iterator[Daemon]:
    """A daemon whose remapping comes from its config file's "userns-remap" key."""
    root = _daemon_dir()
    config = os.path.join(root, "daemon.json")
    Path(config).write_text(json.dumps({"userns-remap": "default"}))
    bridge, prefix, net_args = network_args()
    d = Daemon(root, os.path.join(root, "berth.sock"), None, os.path.join(root, "berthd.log"),  # type: ignore[arg-type]
               [*net_args, "--config-file", config], bridge, prefix)
    d.start()
    try:
        status, out = d.request("POST", "/images/load?quiet=1", busybox_tar().read_bytes(),
                                {"Content-Type": "application/x-tar"})
        assert status == 200, out
        yield d
    finally:
        stop_daemon(d)


def _root_ids(d: Daemon) -> tuple[int, int]:
    """The remapped root's host IDs, from dockerd's layout: <data-root>/<uid>.<gid>."""
    root_dir = docker(d, "info", "-f", "{{.DockerRootDir}}").stdout.strip()
    uid, gid = os.path.basename(root_dir).split(".")
    return int(uid), int(gid)


def _host_ids(pid: str) -> tuple[int, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    uid = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1]
    gid = next(line for line in status.splitlines() if line.startswith("Gid:")).split()[1]
    return int(uid), int(gid)


def test_info_shows_the_remapping(remapped: Daemon) -> None:
    info = json.loads(docker(remapped, "info", "-f", "{{json .}}").stdout)
    assert "name=userns" in info["SecurityOptions"]
    uid, gid = _root_ids(remapped)
    subuid = Path("/etc/subuid").read_text()
    start = next(int(line.split(":")[1]) for line in subuid.splitlines() if line.startswith("dockremap:"))
    assert uid == start and gid >= 100000
    assert info["DockerRootDir"].endswith(f"/data/{uid}.{gid}")


def test_root_is_a_high_uid_and_volume_files_are_its(remapped: Daemon) -> None:
    name, vol = f"un-{uuid.uuid4().hex[:6]}", f"uv-{uuid.uuid4().hex[:6]}"
    uid, gid = _root_ids(remapped)
    try:
        docker(remapped, "run", "-d", "--name", name, "-v", f"{vol}:/v", "busybox", "sh", "-c",
               "touch /v/made /made-here; sleep 60")
        pid = docker(remapped, "inspect", "-f", "{{.State.Pid}}", name).stdout.strip()
        assert _host_ids(pid) == (uid, gid)
        inside = docker(remapped, "exec", name, "sh", "-c", "id -u; stat -c '%u:%g' /bin/busybox /etc/passwd /v/made")
        assert inside.stdout.split() == ["0", "0:0", "0:0", "0:0"]
        mountpoint = json.loads(docker(remapped, "volume", "inspect", vol).stdout)[0]["Mountpoint"]
        st = os.stat(os.path.join(mountpoint, "made"))
        assert (st.st_uid, st.st_gid) == (uid, gid)
        # the writable layer keeps the image's own IDs on disk (commit and diff need no shifting)
        upper = docker(remapped, "inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", name).stdout.strip()
        assert os.stat(os.path.join(upper, "made-here")).st_uid == 0
        assert "A /made-here" in docker(remapped, "diff", name).stdout
    finally:
        docker(remapped, "rm", "-f", name, check=False)
        docker(remapped, "volume", "rm", vol, check=False)


def test_bridge_container_has_its_own_sys_and_low_ports(remapped: Daemon) -> None:
    out = docker(remapped, "run", "--rm", "busybox", "sh", "-c",
                 "ls /sys/class/net; cat /proc/sys/net/ipv4/ip_unprivileged_port_start; "
                 "nc -l -p 80 & sleep 0.2; kill $! && echo bound; echo x > /etc/hosts && echo hosts-writable")
    # the sysfs of its own network namespace, not the host's (the host's has the daemon's bridge)
    assert out.stdout.split() == ["eth0", "lo", "0", "bound", "hosts-writable"]
    none = docker(remapped, "run", "--rm", "--network", "none", "--sysctl", "net.ipv4.ip_forward=1", "busybox",
                  "sh", "-c", "ls /sys/class/net; cat /proc/sys/net/ipv4/ip_forward")
    assert none.stdout.split() == ["lo", "1"]


def test_workdir_and_image_volume_owners(remapped: Daemon) -> None:
    uid, _ = _root_ids(remapped)
    out = docker(remapped, "run", "--rm", "-u", "1000", "-w", "/new/dir", "busybox", "sh", "-c",
                 "pwd; stat -c %u .")
    assert out.stdout.split() == ["/new/dir", "1000"]
    tag = f"unimg-{uuid.uuid4().hex[:6]}:1"
    _image_with_volume(remapped, tag)
    name = f"un-{uuid.uuid4().hex[:6]}"
    try:
        seeded = docker(remapped, "run", "--name", name, tag, "sh", "-c", "cat /data/seed; stat -c '%u:%g' /data")
        assert seeded.stdout == "seeded\n1000:1000\n"
        source = json.loads(docker(remapped, "inspect", "-f", "{{json .Mounts}}", name).stdout)[0]["Source"]
        assert os.stat(source).st_uid == uid + 1000  # the copy from the image took the shift
    finally:
        docker(remapped, "rm", "-fv", name, check=False)
        docker(remapped, "rmi", tag, check=False)


def test_userns_host_opts_out_and_conflicts_are_refused(remapped: Daemon) -> None:
    name = f"un-{uuid.uuid4().hex[:6]}"
    try:
        docker(remapped, "run", "-d", "--name", name, "--userns", "host", "busybox", "sleep", "60")
        pid = docker(remapped, "inspect", "-f", "{{.State.Pid}} {{.HostConfig.UsernsMode}}", name).stdout.split()
        assert pid[1] == "host" and _host_ids(pid[0]) == (0, 0)
        assert docker(remapped, "exec", name, "stat", "-c", "%u", "/bin/busybox").stdout == "0\n"
    finally:
        docker(remapped, "rm", "-f", name, check=False)
    for flags, message in ((["--privileged"], "privileged mode is incompatible with user namespaces"),
                           (["--network", "host"], "cannot share the host's network namespace"),
                           (["--pid", "host"], "cannot share the host PID namespace")):
        out = docker(remapped, "run", "--rm", *flags, "busybox", "true", check=False)
        assert out.returncode == 125 and message in out.stderr, (flags, out.stderr)
    assert docker(remapped, "run", "--rm", "--privileged", "--userns", "host", "busybox", "true").returncode == 0


def test_daemon_refuses_a_root_the_remapped_root_cannot_reach(tmp_path: Path) -> None:
    root = tempfile.mkdtemp(prefix="bt-", dir="/tmp")  # 0700
    try:
        out = subprocess.run([sys.executable, "-m", "berth.daemon.main", "-H", f"unix://{root}/s.sock",
                              "--data-root", f"{root}/data", "--exec-root", f"{root}/run", "--userns-remap", "default"],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 1 and f"restricts access to the remapped root uid/gid ({root})" in out.stderr
        config = tmp_path / "daemon.json"
        config.write_text('{"userns-remap": "dockremap"}')
        os.chmod(root, 0o711)
        both = subprocess.run([sys.executable, "-m", "berth.daemon.main", "-H", f"unix://{root}/s.sock",
                               "--data-root", f"{root}/data", "--exec-root", f"{root}/run",
                               "--userns-remap", "default", "--config-file", str(config)],
                              capture_output=True, text=True, timeout=30)
        assert both.returncode == 1 and "specified both as a flag and in the configuration file" in both.stderr
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_cp_and_export_show_the_containers_own_owners(remapped: Daemon, tmp_path: Path) -> None:
    import io
    import tarfile

    uid, _ = _root_ids(remapped)
    name = f"un-{uuid.uuid4().hex[:6]}"
    (tmp_path / "in").write_text("in\n")
    try:
        docker(remapped, "run", "-d", "--name", name, "busybox", "sh", "-c", "echo x > /made; sleep 60")
        docker(remapped, "cp", str(tmp_path / "in"), f"{name}:/")  # written through the idmapped layer
        assert docker(remapped, "exec", name, "stat", "-c", "%u:%g", "/in").stdout == "0:0\n"
        out = subprocess.run([DOCKER or "docker", "cp", f"{name}:/made", "-"], capture_output=True, check=True,
                             env=dict(os.environ, DOCKER_HOST=remapped.host)).stdout
        made = tarfile.open(fileobj=io.BytesIO(out)).getmember("made")
        assert (made.uid, made.gid) == (0, 0)
        exported = subprocess.run([DOCKER or "docker", "export", name], capture_output=True, check=True,
                                  env=dict(os.environ, DOCKER_HOST=remapped.host)).stdout
        owners = {(m.uid, m.gid) for m in tarfile.open(fileobj=io.BytesIO(exported)).getmembers()}
        assert (uid, uid) not in owners and (0, 0) in owners
    finally:
        docker(remapped, "rm", "-f", name, check=False)


def test_init_and_a_device_at_another_path(remapped: Daemon) -> None:
    out = docker(remapped, "run", "--rm", "--init", "--device", "/dev/full:/dev/xfull", "busybox", "sh", "-c",
                 "cat /proc/1/comm; stat -c '%t:%T' /dev/xfull; echo a > /dev/xfull", check=False)
    assert out.stdout.split() == ["docker-init", "1:7"] and "No space left on device" in out.stderr
