"""Run etcd members on loopback (Debian's etcd-server): for tests and `berth cluster demo`."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field

from berth.etcd.client import EtcdClient, EtcdError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Member:
    name: str
    client_url: str
    peer_url: str
    data_dir: str
    log: str
    proc: subprocess.Popen[bytes] | None = None
    pid: int = 0


@dataclass
class LocalEtcd:
    root: str
    members: list[Member] = field(default_factory=list)

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    def start_member(self, m: Member, state: str) -> None:
        initial = ",".join(f"{x.name}={x.peer_url}" for x in self.members)
        with open(m.log, "ab") as logf:
            m.proc = subprocess.Popen(
                ["etcd", "--name", m.name, "--data-dir", m.data_dir,
                 "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
                 "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
                 "--initial-cluster", initial, "--initial-cluster-state", state,
                 "--initial-cluster-token", os.path.basename(self.root),
                 # loopback: short heartbeats make elections (and our fail-over tests) quick
                 "--heartbeat-interval", "50", "--election-timeout", "500"],
                stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        m.pid = m.proc.pid

    def stop_member(self, m: Member, sig: int = signal.SIGTERM) -> None:
        if m.proc is not None and m.proc.poll() is None:
            m.proc.send_signal(sig)
            try:
                m.proc.wait(10)
            except subprocess.TimeoutExpired:
                m.proc.kill()
                m.proc.wait(5)
        elif m.proc is None and m.pid:
            try:
                os.kill(m.pid, sig)
            except ProcessLookupError:
                pass

    def wait_ready(self, timeout: float = 20.0) -> None:
        client = EtcdClient(self.endpoints, timeout=1.0)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.put("/berth-ready", "1")
                client.delete("/berth-ready")
                return
            except EtcdError as e:
                if time.monotonic() > deadline:
                    raise
                for m in self.members:
                    if m.proc is not None and m.proc.poll() is not None:
                        with open(m.log, "rb") as f:
                            tail = f.read()[-1500:].decode(errors="replace")
                        raise RuntimeError(f"etcd {m.name} exited: {tail}") from e
                time.sleep(0.1)

    def stop(self) -> None:
        for m in self.members:
            self.stop_member(m)
        shutil.rmtree(self.root, ignore_errors=True)


def start_local_etcd(root: str, size: int = 3, host: str = "127.0.0.1") -> LocalEtcd:
    """Start `size` members under `root` (data dirs and logs there) and wait for a quorum; they
    listen on `host` (an address netns hosts reach, for a cluster whose engines use the store)."""
    os.makedirs(root, exist_ok=True)
    cluster = LocalEtcd(root)
    for i in range(size):
        name = f"m{i}"
        cluster.members.append(Member(name, f"http://{host}:{free_port()}", f"http://{host}:{free_port()}",
                                      os.path.join(root, name), os.path.join(root, f"{name}.log")))
    try:
        for m in cluster.members:
            cluster.start_member(m, "new")
        cluster.wait_ready()
    except BaseException:
        cluster.stop()
        raise
    return cluster
