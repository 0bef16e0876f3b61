"""The manager's view of the nodes: their clients, container listings, and scheduler snapshots.

Everything here talks to nodes through berth's Engine API client only; calls to several nodes run
in parallel threads, each bounded by a short timeout so one frozen node cannot stall a listing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from berth.client.api import APIClient
from berth.client.errors import ClientError, DaemonUnreachable
from berth.cluster.scheduler import ContainerInfo, ContainerSpec, Node, PortBinding
from berth.cluster.store import RECORD_LABEL, ClusterStore, ContainerRecord, NodeRecord
from berth.common.errors import BerthError, NotFound

T = TypeVar("T")
NODE_TIMEOUT = 3.0
NODE_API = "1.41"
NODES_CACHE = 0.25  # seconds; health changes within a lease TTL anyway

_pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="node-call")


def node_error(e: Exception) -> BerthError:
    """A node's answer, as the error the manager gives its own client."""
    if isinstance(e, BerthError):
        return e
    if isinstance(e, ClientError):
        err = BerthError(e.message)
        err.status = e.status
        return err
    if isinstance(e, DaemonUnreachable):
        return BerthError(f"node {e.host} is unreachable: {e.reason}")
    return BerthError(str(e))


def call_node(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except (ClientError, DaemonUnreachable, OSError) as e:
        raise node_error(e) from e


@dataclass
class Located:
    node: NodeRecord
    summary: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.summary["Id"])


class ClusterView:
    def __init__(self, store: ClusterStore) -> None:
        self.store = store
        self._clients: dict[str, APIClient] = {}
        self._stream_clients: dict[str, APIClient] = {}
        self._nodes: tuple[float, list[tuple[NodeRecord, bool]]] = (0.0, [])
        # Containers this manager created, by ID (IDs never move: a rescheduled copy has a new one),
        # so that start/attach/wait right after a create skip asking every node.
        self._placed: dict[str, tuple[str, dict[str, Any]]] = {}

    def client(self, node: NodeRecord, timeout: float | None = NODE_TIMEOUT) -> APIClient:
        cache = self._clients if timeout is not None else self._stream_clients
        c = cache.get(node.address)
        if c is None:
            c = cache[node.address] = APIClient(node.address, version=NODE_API, timeout=timeout)
        return c

    def nodes(self) -> list[tuple[NodeRecord, bool]]:
        """Registered nodes and their health, at most NODES_CACHE seconds old."""
        at, nodes = self._nodes
        if time.monotonic() - at > NODES_CACHE:
            nodes = self.store.nodes()
            self._nodes = (time.monotonic(), nodes)
        return nodes

    def remember(self, node: str, summary: dict[str, Any]) -> None:
        if len(self._placed) > 10000:
            self._placed.clear()
        self._placed[summary["Id"]] = (node, summary)

    def forget_id(self, container_id: str) -> None:
        self._placed.pop(container_id, None)

    def healthy(self) -> list[NodeRecord]:
        return [n for n, ok in self.nodes() if ok]

    def node(self, name: str) -> NodeRecord:
        for n, _ in self.nodes():
            if n.name == name:
                return n
        raise NotFound(f"No such node: {name}")

    def each(self, nodes: list[NodeRecord], fn: Callable[[APIClient, NodeRecord], T]
             ) -> list[tuple[NodeRecord, T | Exception]]:
        """Run fn against every node in parallel; a node's failure is returned, not raised."""
        def one(n: NodeRecord) -> T | Exception:
            try:
                return fn(self.client(n), n)
            except (ClientError, DaemonUnreachable, OSError) as e:
                return e
        futures = [(n, _pool.submit(one, n)) for n in nodes]
        return [(n, f.result()) for n, f in futures]

    def listings(self, nodes: list[NodeRecord] | None = None, all_: bool = True,
                 filters: dict[str, list[str]] | None = None) -> list[tuple[NodeRecord, list[dict[str, Any]]]]:
        nodes = self.healthy() if nodes is None else nodes
        out = []
        for n, res in self.each(nodes, lambda c, _n: c.containers.list(all=all_, filters=filters)):
            if not isinstance(res, Exception):
                out.append((n, res))
        return out

    def locate(self, ref: str) -> Located:
        """The node and listing entry of a container: `/<node>/<name>`, a name, or an ID (prefix)."""
        ref = ref.strip()
        nodes = self.healthy()
        placed = self._placed.get(ref)
        if placed is not None:
            for n in nodes:
                if n.name == placed[0]:
                    return Located(n, placed[1])
        if "/" in ref.lstrip("/"):  # `/<node>/<name>` as classic Swarm, or `<node>/<name>` as ps shows it
            node_name, _, rest = ref.lstrip("/").partition("/")
            nodes = [n for n in nodes if n.name == node_name] or nodes
            if any(n.name == node_name for n in nodes):
                ref = rest
        matches: list[Located] = []
        for n, listing in self.listings(nodes):
            found = _snapshot_node(n, listing, []).container(ref)
            if found is not None:
                matches.extend(Located(n, c) for c in listing if c["Id"] == found.id)
        if not matches:
            raise NotFound(f"No such container: {ref}")
        exact = [m for m in matches if m.id == ref or ref.lstrip("/") in (x.lstrip("/") for x in m.summary["Names"])]
        if len(matches) > 1 and len(exact) != 1:
            owner = self._record_owner(matches)
            if owner is not None:
                return owner
            raise BerthError(f"Multiple containers found with the reference {ref}, use the full ID") \
                if not exact else NotFound(f"No such container: {ref}")
        return exact[0] if exact else matches[0]

    def _record_owner(self, matches: list[Located]) -> Located | None:
        """Of several same-named containers (one left on a node that came back), the recorded one."""
        records = {r.rid: r for r in self.store.containers()}
        for m in matches:
            rid = (m.summary.get("Labels") or {}).get(RECORD_LABEL)
            rec = records.get(rid or "")
            if rec is not None and rec.node == m.node.name:
                return m
        return None

    def snapshot(self, records: list[ContainerRecord]) -> list[Node]:
        """Scheduler nodes: every registered node (unhealthy ones marked), with their containers and
        the recorded containers not yet created there, so placements in flight count too."""
        registered = self.nodes()
        listing = dict((n.name, lst) for n, lst in self.listings([n for n, ok in registered if ok]))
        out = []
        for n, ok in registered:
            mine = [r for r in records if r.node == n.name]
            out.append(_snapshot_node(n, listing.get(n.name, []), mine, healthy=ok and n.name in listing))
        return out


def _ports(summary: dict[str, Any], rec: ContainerRecord | None) -> tuple[PortBinding, ...]:
    if rec is not None:  # the requested bindings hold even while the container is stopped
        return ContainerSpec.from_create_body(rec.body).port_bindings
    return tuple(PortBinding(int(p["PublicPort"]), p.get("Type", "tcp"), p.get("IP", ""), int(p.get("PrivatePort", 0)))
                 for p in summary.get("Ports") or [] if p.get("PublicPort"))


def _snapshot_node(n: NodeRecord, listing: list[dict[str, Any]], records: list[ContainerRecord],
                   healthy: bool = True) -> Node:
    by_rid = {r.rid: r for r in records}
    seen: set[str] = set()
    containers = []
    for c in listing:
        rid = (c.get("Labels") or {}).get(RECORD_LABEL, "")
        rec = by_rid.get(rid)
        if rid:
            seen.add(rid)
        containers.append(ContainerInfo(
            id=c["Id"], names=tuple(c.get("Names") or ()), image=c.get("Image", ""),
            labels=dict(c.get("Labels") or {}), ports=_ports(c, rec),
            network_mode=(c.get("HostConfig") or {}).get("NetworkMode", "default"), state=c.get("State", "")))
    for r in records:  # recorded, not yet on the node
        if r.rid not in seen and not r.id:
            spec = ContainerSpec.from_create_body(r.body, r.name)
            containers.append(spec.placeholder(f"pending-{r.rid}"))
    return Node(id=n.name, name=n.name, address=n.address, labels=dict(n.labels), storage_driver=n.storage_driver,
                kernel_version=n.kernel_version, operating_system=n.operating_system, healthy=healthy,
                total_cpus=float(n.ncpu), total_memory=n.memory,
                reserved_cpus=sum(r.cpus for r in records), reserved_memory=sum(r.memory for r in records),
                containers=tuple(containers))
