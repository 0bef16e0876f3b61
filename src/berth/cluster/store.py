"""The cluster's state in etcd: registered nodes, their health, and the desired containers.

Layout under a prefix (default `/berth/cluster/`):
  nodes/<name>       node description (JSON), kept after the node goes away so it shows as unhealthy
  health/<name>      present while the node's lease is renewed: the node is healthy
  containers/<rid>   a scheduled container: node, name, create body, engine ID once created
  names/<name>       the record ID holding a container name, so names stay unique across nodes
  leader             the managers' election
Every container is recorded before it is created on its node; moving one (rescheduling) is a
compare-and-swap on its record, so two managers can never both move it.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from berth.common.errors import Conflict
from berth.etcd import EtcdClient, KeyValue
from berth.etcd.client import cmp_create_revision, cmp_mod_revision, op_delete, op_put

DEFAULT_PREFIX = "/berth/cluster/"
RECORD_LABEL = "com.docker.swarm.id"  # classic Swarm's label tying an engine container to its record


@dataclass(frozen=True)
class NodeRecord:
    name: str
    address: str
    engine_id: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    ncpu: int = 0
    memory: int = 0
    kernel_version: str = ""
    operating_system: str = ""
    storage_driver: str = ""
    server_version: str = ""
    updated_at: float = 0.0


@dataclass(frozen=True)
class ContainerRecord:
    rid: str
    node: str
    name: str
    body: dict[str, Any]
    id: str = ""
    state: str = "scheduled"  # scheduled -> created -> started
    reschedule: bool = False
    moves: int = 0
    created_at: float = 0.0
    mod_revision: int = 0  # from etcd, not stored

    @property
    def cpus(self) -> float:
        host = self.body.get("HostConfig") or {}
        if host.get("NanoCpus"):
            return int(host["NanoCpus"]) / 1e9
        return float(host.get("CpuShares") or 0)

    @property
    def memory(self) -> int:
        return int((self.body.get("HostConfig") or {}).get("Memory") or 0)

    def encode(self) -> str:
        d = asdict(self)
        d.pop("mod_revision")
        return json.dumps(d)

    @classmethod
    def decode(cls, kv: KeyValue) -> ContainerRecord:
        d = kv.json()
        d["mod_revision"] = kv.mod_revision
        return cls(**d)


class ClusterStore:
    def __init__(self, etcd: EtcdClient, prefix: str = DEFAULT_PREFIX) -> None:
        self.etcd = etcd
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"

    def key(self, *parts: str) -> str:
        return self.prefix + "/".join(parts)

    @property
    def election(self) -> str:
        return self.key("leader")

    # --- nodes ----------------------------------------------------------------------------------

    def register_node(self, node: NodeRecord) -> None:
        self.etcd.put(self.key("nodes", node.name), json.dumps(asdict(node)))

    def mark_healthy(self, name: str, lease: int) -> None:
        self.etcd.put(self.key("health", name), str(time.time()), lease=lease)

    def nodes(self) -> list[tuple[NodeRecord, bool]]:
        """Every registered node and whether it is healthy now, in name order."""
        healthy = {kv.key.decode().rsplit("/", 1)[1] for kv in self.etcd.get_prefix(self.key("health", ""))}
        out = []
        for kv in self.etcd.get_prefix(self.key("nodes", "")):
            rec = NodeRecord(**kv.json())
            out.append((rec, rec.name in healthy))
        return out

    def remove_node(self, name: str) -> None:
        self.etcd.delete(self.key("nodes", name))
        self.etcd.delete(self.key("health", name))

    # --- desired containers ---------------------------------------------------------------------

    def containers(self) -> list[ContainerRecord]:
        return [ContainerRecord.decode(kv) for kv in self.etcd.get_prefix(self.key("containers", ""))]

    def container(self, rid: str) -> ContainerRecord | None:
        kv = self.etcd.get(self.key("containers", rid))
        return ContainerRecord.decode(kv) if kv else None

    def new_record(self, node: str, name: str, body: dict[str, Any], reschedule: bool) -> ContainerRecord:
        return ContainerRecord(uuid.uuid4().hex, node, name, body, reschedule=reschedule, created_at=time.time())

    def add(self, rec: ContainerRecord) -> ContainerRecord:
        """Record a container before it is created; its name (if any) must be free cluster-wide."""
        ops = [op_put(self.key("containers", rec.rid), rec.encode())]
        compare = []
        if rec.name:
            compare.append(cmp_create_revision(self.key("names", rec.name), 0))
            ops.append(op_put(self.key("names", rec.name), rec.rid))
        ok, _ = self.etcd.txn(compare, ops)
        if not ok:
            raise Conflict(f'Conflict. The container name "/{rec.name}" is already in use by another '
                           "container in the cluster. You have to remove (or rename) that container to be "
                           "able to reuse that name.")
        return self.container(rec.rid) or rec

    def update(self, rec: ContainerRecord, **changes: Any) -> ContainerRecord | None:
        """Compare-and-swap: None when someone else changed the record first."""
        new = replace(rec, **changes)
        ok, _ = self.etcd.txn([cmp_mod_revision(self.key("containers", rec.rid), rec.mod_revision)],
                              [op_put(self.key("containers", rec.rid), new.encode())])
        return (self.container(rec.rid) or new) if ok else None

    def claim_name(self, rec: ContainerRecord, name: str) -> None:
        """After an unnamed create: remember the name the engine chose (best effort)."""
        if self.etcd.create(self.key("names", name), rec.rid):
            self.update(rec, name=name)

    def forget(self, rec: ContainerRecord) -> None:
        self.etcd.txn([], self._forget_ops(rec))

    def compare_and_forget(self, rec: ContainerRecord) -> bool:
        """Forget only if nobody changed the record since it was read."""
        ok, _ = self.etcd.txn([cmp_mod_revision(self.key("containers", rec.rid), rec.mod_revision)],
                              self._forget_ops(rec))
        return ok

    def _forget_ops(self, rec: ContainerRecord) -> list[dict[str, Any]]:
        ops = [op_delete(self.key("containers", rec.rid))]
        if rec.name:
            kv = self.etcd.get(self.key("names", rec.name))
            if kv is not None and kv.value.decode() == rec.rid:
                ops.append(op_delete(self.key("names", rec.name)))
        return ops
