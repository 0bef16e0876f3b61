"""The cluster the test_cluster_* modules share the code of (each module starts its own): a 3-member
etcd, three netns hosts (the machine driver's; two `type=frontend`, one `type=db`) registered by
`berth cluster join`, and managers driven with the real docker CLI.

Hosts are network namespaces so that a host port (8080) is free once per node, as on separate
machines. The etcd members listen on the hosts' segment (berth.cluster.lab's uplink), so the
engines keep their overlay networks in the same store (`--cluster-store`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from berth.cluster.lab import Uplink, close_uplink, cluster_store_options, open_uplink
from berth.cluster.store import ClusterStore
from berth.etcd import EtcdClient
from berth.etcd.local import LocalEtcd, start_local_etcd
from berth.machine.driver import MachineRecord
from berth.machine.model import EngineSpec, MachineSpec
from berth.machine.netns import NETNS_DIR, NetnsDriver

from ..conftest import _UnixConnection, busybox_tar, docker_cli

DOCKER = docker_cli()
TTL = 2
NODES = (("fe-1", "type=frontend"), ("fe-2", "type=frontend"), ("db-1", "type=db"))


def spawn(args: list[str], log: str) -> subprocess.Popen[bytes]:
    with open(log, "ab") as f:
        return subprocess.Popen([sys.executable, "-m", "berth.cluster.main", *args], stdout=f,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def wait_for(check: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@dataclass
class Host:
    """A netns machine running a berthd, reached through its unix socket."""

    record: MachineRecord

    @property
    def socket(self) -> str:
        return str(self.record.details["socket"])

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def netns(self) -> str:
        return os.path.join(NETNS_DIR, self.record.details["netns"])

    @property
    def pid(self) -> int:
        with open(self.record.details["pidfile"]) as f:
            return int(f.read())

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                timeout: float = 30) -> tuple[int, bytes]:
        conn = _UnixConnection(self.socket, timeout)
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        out = resp.read()
        conn.close()
        return resp.status, out


@dataclass
class Cluster:
    registry: str  # HOST:PORT inside the first host's namespace, insecure on every node
    root: str
    etcd: LocalEtcd
    nodes: dict[str, Host]
    agents: dict[str, subprocess.Popen[bytes]]
    net: int  # the third octet of this cluster's 10.250.x.0/24 segment
    managers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def etcd_urls(self) -> str:
        return ",".join(self.etcd.endpoints)

    @property
    def store(self) -> ClusterStore:
        return ClusterStore(EtcdClient(self.etcd.endpoints))

    def sock(self, manager: str) -> str:
        return os.path.join(self.root, f"{manager}.sock")

    def start_manager(self, name: str, strategy: str = "spread") -> str:
        sock = self.sock(name)
        if os.path.exists(sock):  # left by a killed manager
            os.unlink(sock)
        self.managers[name] = spawn(["manage", "--etcd", self.etcd_urls, "--addr", f"unix://{sock}",
                                     "--strategy", strategy, "--lease-ttl", str(TTL)],
                                    os.path.join(self.root, f"{name}.log"))
        wait_for(lambda: os.path.exists(sock), 15, f"manager {name}")
        return sock

    def join(self, node: str) -> None:
        self.agents[node] = spawn(["join", "--etcd", self.etcd_urls, "--advertise", self.nodes[node].host,
                                   "--name", node, "--lease-ttl", str(TTL)],
                                  os.path.join(self.root, f"join-{node}.log"))

    def docker(self, *args: str, manager: str = "m1", check: bool = True) -> subprocess.CompletedProcess[str]:
        assert DOCKER is not None
        res = subprocess.run([DOCKER, "-H", f"unix://{self.sock(manager)}", *args], capture_output=True, text=True,
                             timeout=60)
        if check:
            assert res.returncode == 0, (args, res.stdout, res.stderr)
        return res

    def where(self, ref: str, manager: str = "m1") -> str:
        return str(json.loads(self.docker("inspect", ref, manager=manager).stdout)[0]["Node"]["Name"])

    def healthy(self) -> set[str]:
        return {n.name for n, ok in self.store.nodes() if ok}

    def clean(self) -> None:
        for h in self.nodes.values():
            status, out = h.request("GET", "/containers/json?all=1")
            for c in json.loads(out) if status == 200 else []:
                h.request("DELETE", f"/containers/{c['Id']}?force=1", timeout=30)
        for h in self.nodes.values():  # an overlay network goes from every node with its removal on one
            status, out = h.request("GET", "/networks")
            for n in json.loads(out) if status == 200 else []:
                if n["Name"] not in ("bridge", "host", "none"):
                    h.request("DELETE", f"/networks/{n['Id']}", timeout=30)
        etcd = EtcdClient(self.etcd.endpoints)
        etcd.delete(self.store.key("containers", ""), prefix=True)
        etcd.delete(self.store.key("names", ""), prefix=True)


@contextmanager
def cluster_lab() -> Iterator[Cluster]:
    """The cluster with manager m1 (spread); everything it made is removed after."""
    root = tempfile.mkdtemp(prefix="bt-cl-", dir="/tmp")
    tag = os.urandom(2).hex()
    net = 100 + int(tag, 16) % 100
    driver = NetnsDriver(os.path.join(root, "machines"))
    registry = f"10.250.{net}.11:5000"
    uplink: Uplink | None = None
    etcd: LocalEtcd | None = None
    nodes: dict[str, Host] = {}
    c: Cluster | None = None
    try:
        uplink = open_uplink(driver, f"10.250.{net}.1/24")
        etcd = start_local_etcd(os.path.join(root, "etcd"), 3, host=uplink.ip)
        c = Cluster(registry, root, etcd, nodes, {}, net)
        tar = busybox_tar().read_bytes()
        opts = cluster_store_options(etcd.endpoints, ttl=TTL)
        for i, (name, label) in enumerate(NODES):
            key, _, value = label.partition("=")
            spec = MachineSpec(f"cl{tag}-{name}", "netns", {"address": f"10.250.{net}.{11 + i}/24"},
                               EngineSpec(labels={key: value}, insecure_registries=(registry,), options=opts))
            nodes[name] = host = Host(driver.create(spec))
            status, out = host.request("POST", "/images/load?quiet=1", tar, {"Content-Type": "application/x-tar"})
            assert status == 200, out
            c.join(name)
        wait_for(lambda: c is not None and c.healthy() == {n for n, _ in NODES}, 20, "three healthy nodes")
        c.start_manager("m1")
        yield c
    finally:
        if c is not None:
            for p in [*c.managers.values(), *c.agents.values()]:
                stop(p)
        for host in nodes.values():
            try:
                host.signal(signal.SIGCONT)
            except (OSError, ValueError):
                pass
            driver.remove(host.record)
        if etcd is not None:
            etcd.stop()
        if uplink is not None:
            close_uplink(uplink)
        subprocess.run(["rm", "-rf", root], check=False)
