"""Container records: every container in memory, by ID and by name, each mirrored to SQLite.

The lowest layer of the container service: it resolves references, saves and deletes records
and publishes container events. It knows nothing of processes, mounts or networks.
"""

from __future__ import annotations

import json
import os

from berth.common.db import Database
from berth.common.errors import InvalidParameter, NotFound

from .events import EventBus
from .model import Container

SCHEMA = """
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    record TEXT NOT NULL
);
"""


class ContainerRecords:
    def __init__(self, root: str, db: Database, events: EventBus) -> None:
        self.root = os.path.join(root, "containers")
        os.makedirs(self.root, exist_ok=True)
        self.db = db
        self.events = events
        self._by_id: dict[str, Container] = {}
        self._names: dict[str, str] = {}
        db.ensure_schema(SCHEMA)

    # --- files of a container ---------------------------------------------------------------
    def dir(self, c: Container) -> str:
        return os.path.join(self.root, c.id)

    def log_path(self, c: Container) -> str:
        return os.path.join(self.dir(c), "ctr.log")

    def rootfs(self, c: Container) -> str:
        return os.path.join(self.dir(c), "rootfs")

    # --- lookups ----------------------------------------------------------------------------
    def get(self, ref: str) -> Container:
        """By full ID, name (with or without '/'), or unique ID prefix, as dockerd resolves."""
        if not ref:
            raise NotFound("No such container: ")
        c = self._by_id.get(ref)
        if c:
            return c
        cid = self._names.get(ref.lstrip("/"))
        if cid:
            return self._by_id[cid]
        matches = [c for cid, c in self._by_id.items() if cid.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidParameter(f"multiple IDs found with provided prefix: {ref}")
        raise NotFound(f"No such container: {ref}")

    def all(self) -> list[Container]:
        return list(self._by_id.values())

    def known(self, cid: str) -> bool:
        """Whether the container still has a record (False once it is removed)."""
        return cid in self._by_id

    def name_owner(self, name: str) -> str | None:
        """The ID of the container that holds `name` (without '/'), if any."""
        return self._names.get(name)

    # --- changes ----------------------------------------------------------------------------
    def save(self, c: Container) -> None:
        with self.db.tx() as tx:
            tx.execute("INSERT OR REPLACE INTO containers(id, name, record) VALUES (?,?,?)",
                       (c.id, c.name, json.dumps(c.to_record())))

    def add(self, c: Container) -> None:
        """Keep and save a new container; nothing of it stays if the save fails."""
        self._by_id[c.id] = c
        self._names[c.name] = c.id
        try:
            self.save(c)
        except BaseException:
            self.forget(c)
            raise

    def rename(self, c: Container, new_name: str) -> None:
        del self._names[c.name]
        c.name = new_name
        self._names[new_name] = c.id
        self.save(c)

    def delete(self, c: Container) -> None:
        with self.db.tx() as tx:
            tx.execute("DELETE FROM containers WHERE id=?", (c.id,))
        self.forget(c)

    def forget(self, c: Container) -> None:
        self._by_id.pop(c.id, None)
        if self._names.get(c.name) == c.id:
            del self._names[c.name]

    def load(self) -> None:
        """Read every saved record (at daemon start)."""
        for row in self.db.query("SELECT record FROM containers"):
            c = Container.from_record(json.loads(row["record"]))
            self._by_id[c.id] = c
            self._names[c.name] = c.id

    def event(self, c: Container, action: str, **extra: str) -> None:
        attrs = {"image": c.image, "name": c.name}
        attrs.update({k: str(v) for k, v in (c.config.get("Labels") or {}).items()})
        attrs.update(extra)
        self.events.publish("container", action, c.id, attrs)
