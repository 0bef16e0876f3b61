"""Image store: image configs (in the content store), tags, and the layers they stand on.

An image's ID is the sha256 of its config. Layers are unpacked once per ChainID and shared by
every image that has them; a layer is removed only when no image and no container needs it.
Metadata lives in SQLite; a row is written only after every blob and layer it names is committed,
so a crash leaves at worst unreferenced files, never a record pointing at nothing.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol

from berth.common import reference
from berth.common.db import Database
from berth.common.digest import chain_ids, is_digest
from berth.common.errors import Conflict, InvalidParameter, NotFound
from berth.content.store import ContentStore
from berth.snapshots.overlay import LayerStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    chains TEXT NOT NULL,          -- JSON list of ChainIDs, bottom first
    size INTEGER NOT NULL,
    created TEXT NOT NULL,
    added REAL NOT NULL,
    last_tag_time TEXT
);
CREATE TABLE IF NOT EXISTS tags (
    ref TEXT PRIMARY KEY,           -- canonical: docker.io/library/busybox:latest
    image_id TEXT NOT NULL REFERENCES images(id)
);
CREATE INDEX IF NOT EXISTS tags_image ON tags(image_id);
CREATE TABLE IF NOT EXISTS image_parents (
    image_id TEXT PRIMARY KEY,      -- a build step's or commit's image
    parent TEXT NOT NULL            -- the image it was made from (docker's Parent)
);
CREATE INDEX IF NOT EXISTS image_parents_parent ON image_parents(parent);
CREATE TABLE IF NOT EXISTS layers (
    chain_id TEXT PRIMARY KEY,
    diff_id TEXT NOT NULL,
    parent TEXT,
    blob TEXT NOT NULL,             -- '': the layer rebuilds its tar (a tar-split); else the digest
                                    -- of its stored uncompressed tar (data roots from before)
    tar_size INTEGER NOT NULL,
    size INTEGER NOT NULL
);
"""


class ContainerUsage(Protocol):
    """What the image store must know of containers (the daemon provides it)."""

    def users(self, image_id: str) -> list[tuple[str, bool]]:
        """(container ID, running) of every container created from the image."""
        ...

    def chains_in_use(self) -> set[str]:
        """Top ChainIDs that containers' writable layers stand on."""
        ...


@dataclass
class Image:
    id: str
    config: dict[str, Any]
    chains: list[str]
    size: int
    created: str
    added: float
    last_tag_time: str | None
    tags: list[str] = field(default_factory=list)

    @property
    def top_chain(self) -> str | None:
        return self.chains[-1] if self.chains else None

    @property
    def diff_ids(self) -> list[str]:
        return list(self.config.get("rootfs", {}).get("diff_ids") or [])


@dataclass
class UnpackedLayer:
    """A layer `ImageStore.unpack_layer` already put in place; `add` only records it."""

    blob: str
    tar_size: int
    size: int


@dataclass
class NewLayer:
    """A layer to add: `open()` gives its tar stream (compressed or not), unless it is `unpacked`."""

    open: Callable[[], BinaryIO]
    unpacked: UnpackedLayer | None = None


class _AtEof:
    """Reads through `src`; calls `at_eof` before reporting EOF, so a check there (a compressed
    digest) can still fail the read, and with it the unpack."""

    def __init__(self, src: BinaryIO, at_eof: Callable[[], None]) -> None:
        self._src = src
        self._at_eof = at_eof

    def read(self, n: int = -1) -> bytes:
        data = self._src.read(n)
        if not data:
            self._at_eof()
        return data


def _now_rfc3339() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1e9):09d}Z"


class ImageStore:
    def __init__(self, db: Database, content: ContentStore, layers: LayerStore, usage: ContainerUsage):
        self.db = db
        self.content = content
        self.layers = layers
        self.usage = usage
        self._configs: dict[str, dict[str, Any]] = {}
        db.ensure_schema(SCHEMA)

    # --- lookup ---------------------------------------------------------------------------
    def _load(self, image_id: str) -> Image | None:
        rows = self.db.query("SELECT * FROM images WHERE id=?", (image_id,))
        if not rows:
            return None
        r = rows[0]
        config = self._configs.get(image_id)
        if config is None:  # configs are immutable (their digest is the ID): parse each once
            config = self._configs[image_id] = json.loads(self.content.read(image_id))
        tags = [t["ref"] for t in self.db.query("SELECT ref FROM tags WHERE image_id=? ORDER BY ref",
                                                   (image_id,))]
        return Image(r["id"], config, json.loads(r["chains"]), r["size"], r["created"], r["added"],
                     r["last_tag_time"], tags)

    def get(self, name: str) -> Image:
        """Find an image by full ID, reference, or unambiguous ID prefix, as dockerd does."""
        img = self._find(name)
        if img is None:
            raise NotFound(f"No such image: {name}")
        return img

    def _find(self, name: str) -> Image | None:
        if is_digest(name):
            return self._load(name)
        try:
            ref = reference.parse(name)
        except reference.InvalidReference:
            ref = None
        if ref is not None:
            canon = reference.normalize(name)
            if ref.digest and not ref.tag:
                canon = f"{ref.name}@{ref.digest}"
            rows = self.db.query("SELECT image_id FROM tags WHERE ref=?", (canon,))
            if rows:
                return self._load(rows[0]["image_id"])
        hexpart = name[7:] if name.startswith("sha256:") else name
        if hexpart and all(c in "0123456789abcdef" for c in hexpart) and len(hexpart) <= 64:
            rows = self.db.query("SELECT id FROM images WHERE id LIKE ?", (f"sha256:{hexpart}%",))
            if len(rows) == 1:
                return self._load(rows[0]["id"])
            if len(rows) > 1:
                raise InvalidParameter(f"ambiguous image ID prefix {name}: matches {len(rows)} images")
        return None

    def all(self) -> list[Image]:
        out = []
        for r in self.db.query("SELECT id FROM images ORDER BY added DESC"):
            img = self._load(r["id"])
            if img:
                out.append(img)
        return out

    # --- adding images --------------------------------------------------------------------
    def add(self, config_bytes: bytes, layers: list[NewLayer], tags: Iterable[str] = ()) -> tuple[Image, list[str]]:
        """Store an image from its config and layer tars; returns (image, tags it displaced).
        Blocking (file I/O): call from a worker thread."""
        try:
            config = json.loads(config_bytes)
        except ValueError:
            raise InvalidParameter("image config is not valid JSON") from None
        if not isinstance(config, dict):
            raise InvalidParameter("image config is not a JSON object")
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        if len(diff_ids) != len(layers):
            raise InvalidParameter(f"image config lists {len(diff_ids)} layers but {len(layers)} were given")
        chains = chain_ids(diff_ids)
        size = 0
        parent: str | None = None
        for diff_id, chain_id, layer in zip(diff_ids, chains, layers, strict=True):
            rows = self.db.query("SELECT size FROM layers WHERE chain_id=?", (chain_id,))
            if layer.unpacked is not None:
                self._record_layer(chain_id, diff_id, parent, layer.unpacked)
                size += layer.unpacked.size
            elif rows and self.layers.has(chain_id):
                size += rows[0]["size"]
            else:
                size += self._add_layer(parent, diff_id, chain_id, layer)
            parent = chain_id
        image_id = self.content.put(config_bytes)
        created = str(config.get("created") or "1970-01-01T00:00:00Z")
        with self.db.tx() as c:
            c.execute("INSERT OR IGNORE INTO images(id, chains, size, created, added) VALUES (?,?,?,?,?)",
                      (image_id, json.dumps(chains), size, created, time.time()))
        displaced = []
        for t in tags:
            old = self.tag(image_id, t)
            if old and old != image_id:
                displaced.append(old)
        img = self._load(image_id)
        assert img is not None
        return img, displaced

    def _add_layer(self, parent: str | None, diff_id: str, chain_id: str, layer: NewLayer) -> int:
        with layer.open() as stream:
            unpacked = self.unpack_layer(parent, diff_id, stream)
        self._record_layer(chain_id, diff_id, parent, unpacked)
        return unpacked.size

    def _record_layer(self, chain_id: str, diff_id: str, parent: str | None, layer: UnpackedLayer) -> None:
        with self.db.tx() as c:
            c.execute("INSERT OR REPLACE INTO layers(chain_id, diff_id, parent, blob, tar_size, size) "
                      "VALUES (?,?,?,?,?,?)", (chain_id, diff_id, parent, layer.blob, layer.tar_size, layer.size))

    def has_layer(self, chain_id: str) -> bool:
        return bool(self.db.query("SELECT 1 FROM layers WHERE chain_id=?", (chain_id,))) and \
            self.layers.has(chain_id)

    def unpack_layer(self, parent: str | None, diff_id: str, stream: BinaryIO,
                     at_eof: Callable[[], None] = lambda: None) -> UnpackedLayer:
        """One pass over a (compressed) layer stream: decompress once and unpack, keeping only the
        tar-split that rebuilds the tar from the unpacked files (for save and push). Thread-safe
        for different layers, so a pull unpacks its layers in parallel; the caller records them,
        in order, with `add`. Nothing becomes visible unless the DiffID matches and `at_eof`
        (called when the stream ends, before anything is committed) does not raise."""
        _, applied = self.layers.apply(parent, _AtEof(stream, at_eof), expected_diff_id=diff_id)  # type: ignore[arg-type]
        if applied.diff_id != diff_id:  # apply checks it too; the record must never trust less
            raise InvalidParameter(f"layer content does not match its DiffID {diff_id}")
        return UnpackedLayer("", applied.tar_size, applied.size)

    def layer_sizes(self) -> dict[str, int]:
        """ChainID -> the bytes of that layer's own files (docker's layer size)."""
        return {r["chain_id"]: int(r["size"]) for r in self.db.query("SELECT chain_id, size FROM layers")}

    def layer_tar_size(self, chain_id: str) -> int:
        return int(self._layer_row(chain_id)["tar_size"])

    def open_layer_tar(self, chain_id: str) -> BinaryIO:
        """The layer's uncompressed tar, exactly the bytes of its DiffID (rebuilt from the layer's
        files; a layer stored before tar-splits existed kept its tar in the content store)."""
        row = self._layer_row(chain_id)
        if row["blob"]:
            return self.content.open(row["blob"])
        return self.layers.open_tar(chain_id, row["diff_id"])

    def layer_opener(self, chain_id: str) -> Callable[[], BinaryIO]:
        """`open_layer_tar` for later: a NewLayer's `open` for a layer the store has."""
        return functools.partial(self.open_layer_tar, chain_id)

    def _layer_row(self, chain_id: str) -> Any:
        rows = self.db.query("SELECT diff_id, blob, tar_size FROM layers WHERE chain_id=?", (chain_id,))
        if not rows:
            raise NotFound(f"layer {chain_id} not found")
        return rows[0]

    # --- parents (docker's local Parent links: builds and commits) ---------------------------
    def set_parent(self, image_id: str, parent: str) -> None:
        with self.db.tx() as c:
            c.execute("INSERT OR REPLACE INTO image_parents(image_id, parent) VALUES (?,?)", (image_id, parent))

    def parent(self, image_id: str) -> str:
        rows = self.db.query("SELECT parent FROM image_parents WHERE image_id=?", (image_id,))
        return str(rows[0]["parent"]) if rows else ""

    def children(self, image_id: str) -> list[str]:
        return [str(r["image_id"]) for r in
                self.db.query("SELECT image_id FROM image_parents WHERE parent=?", (image_id,))]

    # --- tags -----------------------------------------------------------------------------
    def tag(self, image_id: str, ref: str) -> str | None:
        """Point `ref` at the image; returns the image it pointed at before, if any."""
        try:
            parsed = reference.parse(ref)
        except reference.InvalidReference as e:
            raise InvalidParameter(str(e)) from None
        if parsed.digest:
            raise InvalidParameter("refusing to create a tag with a digest reference")
        canon = reference.normalize(ref)
        with self.db.tx() as c:
            row = c.execute("SELECT image_id FROM tags WHERE ref=?", (canon,)).fetchone()
            c.execute("INSERT OR REPLACE INTO tags(ref, image_id) VALUES (?,?)", (canon, image_id))
            c.execute("UPDATE images SET last_tag_time=? WHERE id=?", (_now_rfc3339(), image_id))
        return row["image_id"] if row else None

    def add_digest_ref(self, image_id: str, name: str, digest: str) -> None:
        """Record `name@digest` (a RepoDigest, from a pull or push) for the image."""
        try:
            parsed = reference.parse(f"{name}@{digest}")
        except reference.InvalidReference as e:
            raise InvalidParameter(str(e)) from None
        with self.db.tx() as c:
            c.execute("INSERT OR REPLACE INTO tags(ref, image_id) VALUES (?,?)",
                      (f"{parsed.name}@{digest}", image_id))

    def untag(self, canon: str) -> None:
        with self.db.tx() as c:
            c.execute("DELETE FROM tags WHERE ref=?", (canon,))

    # --- delete ---------------------------------------------------------------------------
    def delete(self, name: str, force: bool = False, prune: bool = True) -> list[dict[str, str]]:
        """Docker's `rmi`: untag a reference, or delete the image when nothing else holds it."""
        img = self.get(name)
        records: list[dict[str, str]] = []
        canon, digests = "", []
        short = img.id[7:19]
        by_ref = not _is_id_prefix(img.id, name)
        if by_ref:
            canon = reference.normalize(name)
            ref = reference.parse(name)
            if ref.digest and not ref.tag:
                canon = f"{ref.name}@{ref.digest}"
            remaining = [t for t in img.tags if t != canon]
            if "@" not in canon:
                # as dockerd: untagging the repository's last tag also drops its digest references
                repo = canon.rsplit(":", 1)[0]
                if not any("@" not in t and t.rsplit(":", 1)[0] == repo for t in remaining):
                    digests = [t for t in remaining if t.startswith(repo + "@")]
                    remaining = [t for t in remaining if t not in digests]
            if not force and not remaining:
                users = self.usage.users(img.id)
                if users:
                    raise Conflict(f'conflict: unable to remove repository reference "{name}" (must force) '
                                   f"- container {users[0][0][:12]} is using its referenced image {short}")
            for t in [canon, *digests]:
                self.untag(t)
                records.append({"Untagged": reference.familiar(t)})
            if remaining:
                return records
        else:
            repos = {t.split("@", 1)[0] if "@" in t else t.rsplit(":", 1)[0] for t in img.tags}
            if len(repos) > 1 and not force:
                raise Conflict(f"conflict: unable to delete {short} (must be forced) "
                               "- image is referenced in multiple repositories")
        if self.children(img.id):
            if by_ref:
                return records  # untagged, and kept for the images built on it, as dockerd
            raise Conflict(f"conflict: unable to delete {short} (cannot be forced) "
                           "- image has dependent child images")
        users = self.usage.users(img.id)
        running = [cid for cid, run in users if run]
        if running:
            if by_ref:
                return records  # the untag was all that could be done, as dockerd
            raise Conflict(f"conflict: unable to delete {short} (cannot be forced) "
                           f"- image is being used by running container {running[0][:12]}")
        if users and not force:
            raise Conflict(f"conflict: unable to delete {short} (must be forced) "
                           f"- image is being used by stopped container {users[0][0][:12]}")
        done = {canon, *digests} if by_ref else set()
        for t in img.tags:
            if t not in done:
                records.append({"Untagged": reference.familiar(t)})
        records.append({"Deleted": img.id})
        parent = self.parent(img.id)
        with self.db.tx() as c:
            c.execute("DELETE FROM tags WHERE image_id=?", (img.id,))
            c.execute("DELETE FROM images WHERE id=?", (img.id,))
            c.execute("DELETE FROM image_parents WHERE image_id=?", (img.id,))
        self.content.delete(img.id)
        self._configs.pop(img.id, None)
        if prune:
            records += self._delete_unused_parents(parent)
        for chain in self.gc_layers():
            records.append({"Deleted": chain})
        return records

    def _delete_unused_parents(self, image_id: str) -> list[dict[str, str]]:
        """dockerd's rmi also deletes the untagged images a deleted one was built on (a build's
        intermediate steps) while nothing else needs them."""
        records: list[dict[str, str]] = []
        while image_id:
            img = self._load(image_id)
            if img is None or img.tags or self.children(image_id) or self.usage.users(image_id):
                break
            parent = self.parent(image_id)
            with self.db.tx() as c:
                c.execute("DELETE FROM images WHERE id=?", (image_id,))
                c.execute("DELETE FROM image_parents WHERE image_id=?", (image_id,))
            self.content.delete(image_id)
            self._configs.pop(image_id, None)
            records.append({"Deleted": image_id})
            image_id = parent
        return records

    def gc_layers(self) -> list[str]:
        """Remove layers no image or container needs; returns their ChainIDs."""
        needed: set[str] = set()
        for r in self.db.query("SELECT chains FROM images"):
            needed.update(json.loads(r["chains"]))
        parents = {r["chain_id"]: r["parent"] for r in self.db.query("SELECT chain_id, parent FROM layers")}
        for top in self.usage.chains_in_use():
            cur: str | None = top
            while cur and cur not in needed:
                needed.add(cur)
                cur = parents.get(cur)
        removed = []
        for chain_id in sorted(set(parents) - needed):
            blob = self.db.query("SELECT blob FROM layers WHERE chain_id=?", (chain_id,))[0]["blob"]
            with self.db.tx() as c:
                c.execute("DELETE FROM layers WHERE chain_id=?", (chain_id,))
            self.layers.remove(chain_id)
            if blob and not self.db.query("SELECT 1 FROM layers WHERE blob=?", (blob,)):
                self.content.delete(blob)
            removed.append(chain_id)
        return removed


def _is_id_prefix(image_id: str, name: str) -> bool:
    hexpart = name[7:] if name.startswith("sha256:") else name
    return bool(hexpart) and image_id[7:].startswith(hexpart)
