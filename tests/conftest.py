"""Shared fixtures: a real berthd on its own socket and data root, with a busybox image loaded.

Each daemon gets a short private directory under /tmp (overlay mount options must stay short)
and everything it made (containers, mounts, cgroups, the directory) is removed afterwards.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BUSYBOX_TAR = Path(tempfile.gettempdir()) / "berth-test-busybox.tar"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 60):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


@dataclass
class Daemon:
    root: str
    socket: str
    proc: subprocess.Popen[bytes]
    log: str
    extra_args: list[str] = field(default_factory=list)
    bridge: str = ""  # the default bridge network's interface, own to this daemon
    iptables_prefix: str = ""

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def request(self, method: str, path: str, body: bytes | dict | list | None = None,
                headers: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, bytes]:
        conn = _UnixConnection(self.socket, timeout)
        data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        hdrs = {"Content-Type": "application/json"} if isinstance(body, (dict, list)) else {}
        hdrs.update(headers or {})
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        out = resp.read()
        conn.close()
        return resp.status, out

    def json(self, method: str, path: str, body: dict | list | None = None) -> object:
        status, out = self.request(method, path, body)
        assert 200 <= status < 300, (status, out)
        return json.loads(out) if out.strip() else None

    def start(self) -> None:
        self.proc = _spawn(self.root, self.socket, self.log, self.extra_args)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


def _spawn(root: str, sock: str, log: str, extra: list[str]) -> subprocess.Popen[bytes]:
    with open(log, "ab") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "berth.daemon.main", "-H", f"unix://{sock}",
             "--data-root", os.path.join(root, "data"), "--exec-root", os.path.join(root, "run"), *extra],
            stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"berthd exited with {proc.returncode}: {Path(log).read_text()[-2000:]}")
        try:
            conn = _UnixConnection(sock, 2)
            conn.request("GET", "/_ping")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("berthd did not come up in 30 s")


def busybox_tar() -> Path:
    """The deterministic busybox image archive, made once per machine from busybox-static."""
    if not BUSYBOX_TAR.exists():
        tmp = BUSYBOX_TAR.with_suffix(".tmp")
        subprocess.run([sys.executable, str(REPO / "scripts" / "mkbusybox.py"), "-o", str(tmp)], check=True)
        tmp.rename(BUSYBOX_TAR)
    return BUSYBOX_TAR


def network_args() -> tuple[str, str, list[str]]:
    """A bridge name, a chain prefix and an address pool of the daemon's own, so that test daemons,
    and the user's berthd (berth0, BERTH, 10.210.0.0/16), can run side by side."""
    tag = os.urandom(3).hex()
    block = int.from_bytes(os.urandom(2), "big") % 512  # a /23 out of 10.212.0.0/14
    pool = f"10.{212 + block // 128}.{(block % 128) * 2}.0/23,size=27"
    bridge, prefix = f"bt{tag}", f"BT{tag.upper()}"
    return bridge, prefix, ["--bridge-name", bridge, "--iptables-prefix", prefix, "--default-pool", pool]


def start_daemon(extra: list[str] | None = None) -> Daemon:
    root = tempfile.mkdtemp(prefix="bt-", dir="/tmp")
    sock = os.path.join(root, "berth.sock")
    log = os.path.join(root, "berthd.log")
    bridge, prefix, net_args = network_args()
    d = Daemon(root, sock, None, log, [*net_args, *(extra or [])], bridge, prefix)  # type: ignore[arg-type]
    d.start()
    status, out = d.request("POST", "/images/load?quiet=1", busybox_tar().read_bytes(),
                            {"Content-Type": "application/x-tar"})
    assert status == 200 and b"Loaded image" in out, out
    return d


def stop_daemon(d: Daemon) -> None:
    """Remove every container (so conmon, runc state and cgroups go), stop berthd, clean up."""
    try:
        if d.proc.poll() is None:
            status, out = d.request("GET", "/containers/json?all=1")
            if status == 200:
                for c in json.loads(out):
                    d.request("DELETE", f"/containers/{c['Id']}?force=1", timeout=30)
            status, out = d.request("GET", "/networks")
            if status == 200:
                for n in json.loads(out):
                    if n["Name"] not in ("bridge", "host", "none"):
                        d.request("DELETE", f"/networks/{n['Id']}", timeout=30)
    except OSError:
        pass
    if d.proc.poll() is None:
        d.proc.terminate()
        try:
            d.proc.wait(10)
        except subprocess.TimeoutExpired:
            d.proc.kill()
    # Anything a crashed test left: conmon monitors, mounts under the root.
    subprocess.run(["pkill", "-9", "-f", f"conmon.*{d.root}"], check=False)
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f if d.root in line.split()[4]]
    for p in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", p], check=False)
    shutil.rmtree(d.root, ignore_errors=True)
    _remove_networking(d)


def _remove_networking(d: Daemon) -> None:
    """berthd keeps its bridges and chains on SIGTERM (live restore): take this daemon's away."""
    if not d.bridge:
        return
    subprocess.run(["ip", "link", "del", d.bridge], capture_output=True, check=False)
    if shutil.which("iptables-save"):
        from berth.network.iptables import Firewall

        if f"{d.iptables_prefix}-" in subprocess.run(["iptables-save"], capture_output=True, text=True).stdout:
            Firewall(d.iptables_prefix).uninstall()


@pytest.fixture(scope="session")
def berthd() -> Iterator[Daemon]:
    d = start_daemon()
    yield d
    stop_daemon(d)


@pytest.fixture
def fresh_berthd() -> Iterator[Callable[..., Daemon]]:
    """A daemon of the test's own, for tests that kill or restart it."""
    made: list[Daemon] = []

    def make(extra: list[str] | None = None) -> Daemon:
        d = start_daemon(extra)
        made.append(d)
        return d

    yield make
    for d in made:
        stop_daemon(d)


@pytest.fixture(scope="session")
def daemon_host(berthd: Daemon) -> str:
    return berthd.host


@pytest.fixture
def dockerpy(berthd: Daemon):  # type: ignore[no-untyped-def]
    import docker

    client = docker.DockerClient(base_url=berthd.host, version="auto", timeout=60)
    yield client
    client.close()


def docker_cli() -> str | None:
    for path in ("/usr/local/bin/docker", "/usr/bin/docker"):
        if os.path.exists(path):
            return path
    return shutil.which("docker")
