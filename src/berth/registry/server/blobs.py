"""Global content-addressed blobs at `<root>/blobs/<algo>/<hex>` (sha256 and sha512).

The layout matches `berth.content.store.ContentStore`, which handles sha256 only; the registry
needs sha512 too. A blob appears only by rename of a verified file (see `uploads.py`) and is
immutable afterwards; removing one is the garbage collector's job, never a request's.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

from .fsutil import write_atomic
from .names import ALGORITHMS, check_digest


class BlobStore:
    def __init__(self, root: str) -> None:
        self.root = os.path.join(root, "blobs")
        for algo in ALGORITHMS:
            os.makedirs(os.path.join(self.root, algo), exist_ok=True)

    def path(self, digest: str) -> str:
        algo, hexpart = check_digest(digest)
        return os.path.join(self.root, algo, hexpart)

    def size(self, digest: str) -> int | None:
        try:
            return os.stat(self.path(digest)).st_size
        except FileNotFoundError:
            return None

    def read(self, digest: str) -> bytes | None:
        try:
            with open(self.path(digest), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def put(self, data: bytes, algo: str = "sha256") -> str:
        """Store small content (manifests) whose digest we compute ourselves."""
        digest = f"{algo}:{hashlib.new(algo, data).hexdigest()}"
        path = self.path(digest)
        if not os.path.exists(path):
            write_atomic(path, data)
        return digest

    def adopt(self, src: str, digest: str) -> None:
        """Rename an already verified and synced file into place (same filesystem)."""
        target = self.path(digest)
        if os.path.exists(target):
            os.unlink(src)  # identical bytes by definition: keep the one readers may hold open
        else:
            os.rename(src, target)

    def delete(self, digest: str) -> None:
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError:
            pass

    def digests(self) -> Iterator[str]:
        for algo in ALGORITHMS:
            for name in os.listdir(os.path.join(self.root, algo)):
                if not name.startswith("."):
                    yield f"{algo}:{name}"
