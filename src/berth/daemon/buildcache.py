"""The builder's step cache: (parent image, step, content of the files it copies) -> image.

A record only points at an image in the image store; the layers are the store's. A record whose
image is gone (removed by `rmi` or a prune) is a miss and is dropped when found. Records live in
SQLite, so a rebuild after a daemon restart still hits. Keys never involve paths of the build
directory on the client, mtimes or owners: a renamed or freshly cloned directory hits as well.
"""

from __future__ import annotations

import hashlib
import json
import time

from berth.common.db import Database
from berth.common.errors import NotFound
from berth.images.store import ImageStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS build_cache (
    key TEXT PRIMARY KEY,           -- sha256 of the step's identity (see step_key)
    image_id TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS build_cache_image ON build_cache(image_id);
"""


def step_key(parent: str, kind: str, identity: str, content: str = "") -> str:
    """The cache key of one step: its parent image ("scratch" for none), the instruction kind,
    what identifies it (its expanded created-by line, build-arg prefix included) and, for COPY
    and ADD, the digest of the copied content."""
    data = json.dumps([parent, kind, identity, content], separators=(",", ":"))
    return hashlib.sha256(data.encode("utf-8", "surrogateescape")).hexdigest()


class BuildCache:
    def __init__(self, db: Database, images: ImageStore) -> None:
        self.db = db
        self.images = images
        db.ensure_schema(SCHEMA)

    def image_exists(self, image_id: str) -> bool:
        try:
            self.images.get(image_id)
        except NotFound:
            return False
        return True

    def get(self, key: str) -> str | None:
        rows = self.db.query("SELECT image_id FROM build_cache WHERE key=?", (key,))
        if not rows:
            return None
        image_id = str(rows[0]["image_id"])
        if not self.image_exists(image_id):
            with self.db.tx() as c:
                c.execute("DELETE FROM build_cache WHERE key=?", (key,))
            return None
        return image_id

    def put(self, key: str, image_id: str) -> None:
        with self.db.tx() as c:
            c.execute("INSERT OR REPLACE INTO build_cache(key, image_id, created) VALUES (?,?,?)",
                      (key, image_id, time.time()))

    def descends_from(self, image_id: str, ancestor: str) -> bool:
        """Is `ancestor` the image itself or one it was built from, step by step? (dockerd's
        `--cache-from` rule: a local step is reused only on the way to a named image.)"""
        seen: set[str] = set()
        cur: str | None = image_id
        while cur and cur not in seen:
            if cur == ancestor:
                return True
            seen.add(cur)
            cur = self.images.parent(cur)
        return False

    def prune(self) -> int:
        """Drop every record (`builder prune`); returns how many there were."""
        with self.db.tx() as c:
            n = c.execute("SELECT COUNT(*) FROM build_cache").fetchone()[0]
            c.execute("DELETE FROM build_cache")
        return int(n)
