"""Content-addressed blob store: ingest -> verify -> commit.

Blobs live at `<root>/blobs/sha256/<hex>`. A write goes to `<root>/ingest/<random>`, is hashed
while it streams, and is renamed into place only when its digest is what the caller expected;
a committed blob is immutable. Nothing here knows what the bytes mean.
"""

from __future__ import annotations

import hashlib
import os
from typing import BinaryIO, Protocol

from berth.common.digest import split
from berth.common.errors import InvalidParameter, NotFound


class DigestMismatch(InvalidParameter):
    pass


class Writer(Protocol):
    def write(self, data: bytes) -> int: ...
    def commit(self, expected: str | None = None) -> str: ...
    def abort(self) -> None: ...


class ContentStore:
    """Lifecycle: `writer()` -> `write()`* -> `commit(expected)`; or `abort()`. Readers see only
    committed blobs. Deleting is the garbage collector's job, never a reader's."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._blobs = os.path.join(root, "blobs", "sha256")
        self._ingest = os.path.join(root, "ingest")
        os.makedirs(self._blobs, exist_ok=True)
        os.makedirs(self._ingest, exist_ok=True)

    def path(self, digest: str) -> str:
        algo, hexpart = split(digest)
        if algo != "sha256":
            raise InvalidParameter(f"unsupported digest algorithm: {algo}")
        return os.path.join(self._blobs, hexpart)

    def exists(self, digest: str) -> bool:
        return os.path.exists(self.path(digest))

    def size(self, digest: str) -> int:
        try:
            return os.stat(self.path(digest)).st_size
        except FileNotFoundError:
            raise NotFound(f"blob not found: {digest}") from None

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"blob not found: {digest}") from None

    def read(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def writer(self, verify: bool = True) -> _FileWriter:
        """`verify=False`: the caller checks the bytes' digest itself as they stream past (a layer
        unpacked while it is stored) and commits with it; the writer does not hash them again."""
        return _FileWriter(self, verify)

    def put(self, data: bytes, expected: str | None = None) -> str:
        w = self.writer()
        try:
            w.write(data)
            return w.commit(expected)
        except BaseException:
            w.abort()
            raise

    def ingest(self, stream: BinaryIO, expected: str | None = None) -> str:
        w = self.writer()
        try:
            while chunk := stream.read(1 << 20):
                w.write(chunk)
            return w.commit(expected)
        except BaseException:
            w.abort()
            raise

    def delete(self, digest: str) -> None:
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError:
            pass

    def clean_ingest(self) -> None:
        """Drop leftovers of writes that never committed (a crash mid-ingest)."""
        for name in os.listdir(self._ingest):
            try:
                os.unlink(os.path.join(self._ingest, name))
            except OSError:
                pass


class _FileWriter:
    def __init__(self, store: ContentStore, verify: bool = True) -> None:
        self._store = store
        self._path = os.path.join(store._ingest, os.urandom(12).hex())
        self._f = open(self._path, "wb")
        self._hash = hashlib.sha256() if verify else None
        self.size = 0

    def write(self, data: bytes) -> int:
        if self._hash is not None:
            self._hash.update(data)
        self.size += len(data)
        return self._f.write(data)

    def commit(self, expected: str | None = None) -> str:
        if self._hash is None and expected is None:
            self.abort()
            raise ValueError("an unverified write must be committed with the digest its caller checked")
        digest = "sha256:" + self._hash.hexdigest() if self._hash is not None else str(expected)
        if expected is not None and expected != digest:
            self.abort()
            raise DigestMismatch(f"digest mismatch: expected {expected}, got {digest}")
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        target = self._store.path(digest)
        if os.path.exists(target):
            os.unlink(self._path)
        else:
            os.rename(self._path, target)
        return digest

    def abort(self) -> None:
        if not self._f.closed:
            self._f.close()
        try:
            os.unlink(self._path)
        except FileNotFoundError:
            pass
