"""`berth cluster join`: register a berthd as a node and keep its health lease alive.

The lease is renewed only while the daemon answers /_ping, so a frozen or dead daemon becomes
unhealthy within the lease's TTL even though this agent still runs. Labels are re-read from the
daemon's /info now and then, so a label change (SIGHUP reload) reaches the scheduler.
"""

from __future__ import annotations

import logging
import threading
import time

from berth.client.api import APIClient
from berth.client.errors import ClientError, DaemonUnreachable
from berth.cluster.store import ClusterStore, NodeRecord
from berth.etcd import LeaseKeeper

log = logging.getLogger(__name__)

PING_TIMEOUT = 1.0
INFO_REFRESH = 10.0


def parse_labels(labels: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in labels or []:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def describe_node(address: str, name: str | None = None) -> NodeRecord:
    info = APIClient(address, version="1.41", timeout=5).system.info()
    return NodeRecord(
        name=name or info.get("Name") or address, address=address, engine_id=info.get("ID", ""),
        labels=parse_labels(info.get("Labels")), ncpu=int(info.get("NCPU") or 0),
        memory=int(info.get("MemTotal") or 0), kernel_version=info.get("KernelVersion", ""),
        operating_system=info.get("OperatingSystem", ""), storage_driver=info.get("Driver", ""),
        server_version=info.get("ServerVersion", ""), updated_at=time.time())


def daemon_answers(address: str) -> bool:
    try:
        resp = APIClient(address, version="1.41", timeout=PING_TIMEOUT).request("GET", "/_ping", versioned=False)
        resp.read()
        return True
    except (ClientError, DaemonUnreachable, OSError):
        return False


class NodeAgent:
    def __init__(self, store: ClusterStore, address: str, name: str | None = None, ttl: int = 3) -> None:
        self.store = store
        self.address = address
        self.node = describe_node(address, name)
        self.ttl = ttl
        self.keeper = LeaseKeeper(store.etcd, ttl, on_new_lease=self._announce,
                                  healthy=lambda: daemon_answers(address))

    @property
    def name(self) -> str:
        return self.node.name

    def _announce(self, lease: int) -> None:
        self.store.register_node(self.node)
        self.store.mark_healthy(self.node.name, lease)
        log.info("node %s (%s) healthy under lease %x", self.node.name, self.address, lease)

    def start(self) -> None:
        self.keeper.start()

    def run(self, stop: threading.Event) -> None:
        self.start()
        try:
            while not stop.wait(INFO_REFRESH):
                try:
                    fresh = describe_node(self.address, self.node.name)
                except (ClientError, DaemonUnreachable, OSError):
                    continue
                if fresh.labels != self.node.labels:
                    self.node = fresh
                    self.store.register_node(fresh)
        finally:
            self.stop()

    def stop(self, leave: bool = False) -> None:
        self.keeper.stop(revoke=True)
        if leave:
            self.store.remove_node(self.node.name)
