"""The manager: scheduling with desired state in etcd, leader election, rescheduling.

Any manager serves the API and schedules creates (names and placements are etcd transactions,
so two managers cannot claim the same name). Only the elected leader moves containers off
failed nodes and removes the stale copies a returning node still holds: every move is a
compare-and-swap on the container's record, so a container moves once, whoever is leader.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from typing import Any

from berth.client.distribution import pull
from berth.client.errors import ClientError, DaemonUnreachable
from berth.client.stream import iter_json
from berth.cluster.scheduler import (
    ContainerSpec,
    NoSuitableNode,
    Scheduler,
    default_filters,
    strategy_by_name,
)
from berth.cluster.store import RECORD_LABEL, ClusterStore, ContainerRecord, NodeRecord
from berth.cluster.view import ClusterView, call_node
from berth.common.errors import Conflict
from berth.common.ids import generate_name
from berth.etcd import EtcdError, LeaderKey, LeaseKeeper

log = logging.getLogger(__name__)

ON_NODE_FAILURE = "on-node-failure"
GIVE_UP = 60.0  # seconds a record may stay without its container before it counts as a failed create


class Manager:
    def __init__(self, store: ClusterStore, strategy: str = "spread", advertise: str = "",
                 lease_ttl: int = 3, reconcile_interval: float = 1.0) -> None:
        self.store = store
        self.view = ClusterView(store)
        self.strategy = strategy
        self.filters = default_filters()
        self.scheduler = Scheduler(self.filters, strategy_by_name(strategy))
        self.advertise = advertise
        self.id = uuid.uuid4().hex[:12]
        self.lease_ttl = lease_ttl
        self.reconcile_interval = reconcile_interval
        self.is_leader = False
        self.leader_key: LeaderKey | None = None
        self._lock = threading.Lock()  # one placement at a time in this manager
        self._stop = threading.Event()
        self._keeper = LeaseKeeper(store.etcd, lease_ttl)
        self._threads: list[threading.Thread] = []
        self._writes: queue.Queue[tuple[str, dict[str, Any], threading.Event]] = queue.Queue()

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._keeper.start()
        for target, name in ((self._elect, "elect"), (self._reconcile_loop, "reconcile"), (self._writer, "writer")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._later("", flush=True).wait(5)  # what is queued gets written first
        self._stop.set()
        if self.leader_key is not None and self.is_leader:
            try:
                self.store.etcd.resign(self.leader_key)
            except EtcdError:
                pass
        self.is_leader = False
        self._keeper.stop(revoke=True)

    def leader_address(self) -> str:
        try:
            kv = self.store.etcd.leader(self.store.election)
        except EtcdError:
            return ""
        return kv.value.decode() if kv else ""

    def _elect(self) -> None:
        while not self._stop.is_set():
            lease = self._keeper.lease
            try:
                key = self.store.etcd.campaign(self.store.election, self.advertise or self.id, lease)
            except EtcdError as e:
                log.warning("campaign failed: %s", e)
                self._stop.wait(0.5)
                continue
            if lease != self._keeper.lease:
                continue  # the lease was lost while campaigning: that win is void
            self.leader_key, self.is_leader = key, True
            log.info("manager %s is the leader", self.id)
            while not self._stop.is_set() and self._keeper.lease == lease:
                self._stop.wait(0.2)
            self.is_leader = False
            log.info("manager %s lost its leadership", self.id)

    # --- scheduling -----------------------------------------------------------------------------

    def create(self, body: dict[str, Any], name: str | None) -> dict[str, Any]:
        """Place, record, then create on the chosen node (forgetting the record if that fails).

        An unnamed container is named here, as the engine would, so its record holds the name it
        keeps when rescheduled.
        """
        spec = ContainerSpec.from_create_body(body, name or "")
        rid = uuid.uuid4().hex
        sent = dict(body)
        sent["Env"] = list(spec.env)
        sent["Labels"] = {**spec.labels, RECORD_LABEL: rid}
        reschedule = ON_NODE_FAILURE in spec.reschedule_policies
        with self._lock:
            node = self.scheduler.select(spec, self.view.snapshot(self.store.containers()))
            for attempt in range(10):
                chosen = name or generate_name()
                try:
                    rec = self.store.add(ContainerRecord(rid, node.name, chosen, sent, reschedule=reschedule,
                                                         created_at=time.time()))
                    break
                except Conflict:
                    if name or attempt == 9:
                        raise
        node_rec = self.view.node(node.name)
        try:
            out = call_node(lambda: self._create_on(node_rec, sent, rec.name))
        except Exception:
            self.store.forget(rec)
            raise
        self.view.remember(node.name, {"Id": out["Id"], "Names": [f"/{rec.name}"], "Labels": sent["Labels"]})
        self._later(rec.rid, id=out["Id"], state="created")
        return out

    def _create_on(self, node: NodeRecord, body: dict[str, Any], name: str | None) -> dict[str, Any]:
        """Create on the node; one that lacks the image pulls it first, as classic Swarm did, so a
        compose project's services land on any node. A failed pull gives the create's own 404 back
        (the docker CLI then pulls through the manager, on every node, and tries again)."""
        client = self.view.client(node)
        try:
            return dict(client.containers.create(body, name))
        except ClientError as e:
            if e.status != 404 or "image" not in e.message.lower() or not body.get("Image"):
                raise
            missing = e
        image = str(body["Image"])
        tagged = image if "@" in image or ":" in image.rpartition("/")[2] else f"{image}:latest"
        try:
            for msg in iter_json(pull(self.view.client(node, timeout=None), tagged)):
                if isinstance(msg, dict) and msg.get("error"):
                    raise missing
        except (ClientError, DaemonUnreachable, OSError):
            raise missing from None
        log.info("pulled %s on %s for a create", tagged, node.name)
        return dict(client.containers.create(body, name))

    def _later(self, rid: str, **changes: Any) -> threading.Event:
        """Record a change after answering: writes go through one thread, so they land in order."""
        done = threading.Event()
        self._writes.put((rid, changes, done))
        return done

    def _writer(self) -> None:
        while True:
            rid, changes, done = self._writes.get()
            try:
                if changes.get("flush"):
                    pass
                elif changes.get("forget"):
                    rec = self.store.container(rid)
                    if rec is not None:
                        self.store.forget(rec)
                else:
                    self._record(rid, **changes)
            except EtcdError as e:
                log.warning("recording %s %s failed: %s", rid, changes, e)
            finally:
                done.set()

    def _record(self, rid: str, **changes: Any) -> None:
        """Update a record, retrying on a concurrent change (compare-and-swap)."""
        for _ in range(5):
            rec = self.store.container(rid)
            if rec is None or self.store.update(rec, **changes) is not None:
                return

    def record_of(self, summary: dict[str, Any]) -> ContainerRecord | None:
        rid = (summary.get("Labels") or {}).get(RECORD_LABEL)
        return self.store.container(rid) if rid else None

    def mark(self, summary: dict[str, Any], state: str) -> None:
        rid = (summary.get("Labels") or {}).get(RECORD_LABEL)
        if rid:
            self._later(rid, state=state)

    def forget(self, summary: dict[str, Any]) -> None:
        """After a removal: waits, so the name is free when the client hears back."""
        self.view.forget_id(summary.get("Id", ""))
        rid = (summary.get("Labels") or {}).get(RECORD_LABEL)
        if rid:
            self._later(rid, forget=True).wait(10)

    # --- reconciliation (leader only) -----------------------------------------------------------

    def _reconcile_loop(self) -> None:
        while not self._stop.wait(self.reconcile_interval):
            if not self.is_leader:
                continue
            try:
                self.reconcile()
            except EtcdError as e:
                log.warning("reconcile: %s", e)
            except Exception:  # noqa: BLE001 - the loop must survive one bad pass
                log.exception("reconcile failed")

    def reconcile(self) -> None:
        nodes = self.store.nodes()
        down = {n.name for n, ok in nodes if not ok}
        records = self.store.containers()
        for rec in records:
            if rec.node in down and rec.reschedule:
                self._move(rec)
        self._remove_stale({r.rid: r for r in self.store.containers()})

    def _move(self, rec: ContainerRecord) -> None:
        spec = ContainerSpec.from_create_body(rec.body, rec.name)
        with self._lock:
            try:
                node = self.scheduler.select(spec, self.view.snapshot(self.store.containers()))
            except NoSuitableNode as e:
                log.warning("cannot reschedule %s: %s", rec.name or rec.rid, e.message)
                return
            # created_at restarts: a move that never completes is given up GIVE_UP seconds after it began
            moved = self.store.update(rec, node=node.name, id="", state="scheduled", moves=rec.moves + 1,
                                      created_at=time.time())
        if moved is None:
            return  # another manager moved it first
        log.info("rescheduling %s from %s to %s", rec.name or rec.rid, rec.node, node.name)
        client = self.view.client(self.view.node(node.name))
        try:
            out = call_node(lambda: self._create_on(self.view.node(node.name), rec.body, rec.name or None))
            self._record(rec.rid, id=out["Id"], state="created")
            if rec.state == "started":
                call_node(lambda: client.containers.start(out["Id"]))
                self._record(rec.rid, state="started")
        except Exception as e:  # noqa: BLE001 - logged; the record stays on the new node
            log.warning("rescheduling %s on %s failed: %s", rec.name or rec.rid, node.name, e)

    def _remove_stale(self, records: dict[str, ContainerRecord]) -> None:
        """Bring the nodes and the records together: a node that comes back still runs the
        containers moved away from it (removed there); a record whose container is gone from its
        healthy node (auto-removed, or removed on the node directly) is dropped."""
        present: set[str] = set()
        listed: set[str] = set()
        for node, listing in self.view.listings():
            listed.add(node.name)
            for c in listing:
                rid = (c.get("Labels") or {}).get(RECORD_LABEL, "")
                rec = records.get(rid)
                if rec is not None and rec.node != node.name:
                    log.info("removing %s from %s: it now runs on %s", c["Id"][:12], node.name, rec.node)
                    try:
                        self.view.client(node).containers.remove(c["Id"], force=True)
                    except (ClientError, DaemonUnreachable, OSError) as e:
                        log.warning("could not remove stale %s: %s", c["Id"][:12], e)
                elif rec is not None:
                    present.add(rid)
        now = time.time()
        for rec in records.values():
            if rec.node in listed and rec.rid not in present and (rec.id or now - rec.created_at > GIVE_UP):
                # Read again: a create may have landed since the listing.
                fresh = self.store.container(rec.rid)
                if fresh is not None and fresh.mod_revision == rec.mod_revision and now - rec.created_at > 2:
                    log.info("forgetting %s: gone from %s", rec.name or rec.rid, rec.node)
                    self.store.compare_and_forget(fresh)
