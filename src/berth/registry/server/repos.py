"""Per-repository links at `<root>/repositories/<name>/`: which blobs and manifests belong to it.

    _layers/<algo>/<hex>                 a blob pushed to or mounted into this repository
    _manifests/<algo>/<hex>              a manifest (its bytes are a global blob); holds its media type
    _tags/<tag>                          holds the digest the tag points at
    _referrers/<algo>/<subject-hex>/<algo>-<hex>   a referrer's descriptor (JSON), by its subject

Components starting with `_` can never be repository names, so nested repositories and these
directories cannot collide. Every write is temp+rename; a link never exists before its blob.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

from .fsutil import prune_empty_dirs, read_text, remove, write_atomic
from .names import check_digest


class Repositories:
    def __init__(self, root: str) -> None:
        self.root = os.path.join(root, "repositories")
        os.makedirs(self.root, exist_ok=True)

    def _dir(self, name: str) -> str:
        return os.path.join(self.root, *name.split("/"))

    def _digest_path(self, name: str, kind: str, digest: str) -> str:
        algo, hexpart = check_digest(digest)
        return os.path.join(self._dir(name), kind, algo, hexpart)

    def exists(self, name: str) -> bool:
        d = self._dir(name)
        return os.path.isdir(os.path.join(d, "_manifests")) or os.path.isdir(os.path.join(d, "_layers"))

    # --- blobs --------------------------------------------------------------------------------
    def link_blob(self, name: str, digest: str) -> None:
        """Link (or touch: online gc spares blobs whose links were touched lately)."""
        path = self._digest_path(name, "_layers", digest)
        try:
            os.utime(path)
        except FileNotFoundError:
            write_atomic(path, b"", sync=False)

    def touch_blob(self, name: str, digest: str) -> None:
        try:
            os.utime(self._digest_path(name, "_layers", digest))
        except FileNotFoundError:
            pass

    def blob_link_times(self, digest: str) -> Iterator[float]:
        """mtimes of every repository's link to `digest`."""
        algo, hexpart = check_digest(digest)
        for name in self.names():
            try:
                yield os.stat(os.path.join(self._dir(name), "_layers", algo, hexpart)).st_mtime
            except FileNotFoundError:
                continue

    def has_blob(self, name: str, digest: str) -> bool:
        return os.path.exists(self._digest_path(name, "_layers", digest))

    def unlink_blob(self, name: str, digest: str) -> bool:
        return remove(self._digest_path(name, "_layers", digest))

    # --- manifests ----------------------------------------------------------------------------
    def link_manifest(self, name: str, digest: str, media_type: str) -> None:
        write_atomic(self._digest_path(name, "_manifests", digest), media_type.encode(), sync=False)

    def manifest_media_type(self, name: str, digest: str) -> str | None:
        return read_text(self._digest_path(name, "_manifests", digest))

    def unlink_manifest(self, name: str, digest: str) -> bool:
        return remove(self._digest_path(name, "_manifests", digest))

    def manifests(self, name: str) -> Iterator[str]:
        base = os.path.join(self._dir(name), "_manifests")
        for algo in _listdir(base):
            for hexpart in _listdir(os.path.join(base, algo)):
                if not hexpart.startswith("."):
                    yield f"{algo}:{hexpart}"

    # --- tags ---------------------------------------------------------------------------------
    def set_tag(self, name: str, tag: str, digest: str) -> None:
        write_atomic(os.path.join(self._dir(name), "_tags", tag), digest.encode(), sync=False)

    def resolve_tag(self, name: str, tag: str) -> str | None:
        return read_text(os.path.join(self._dir(name), "_tags", tag))

    def delete_tag(self, name: str, tag: str) -> bool:
        return remove(os.path.join(self._dir(name), "_tags", tag))

    def tags(self, name: str) -> list[str]:
        return [t for t in _listdir(os.path.join(self._dir(name), "_tags")) if not t.startswith(".")]

    # --- referrers ----------------------------------------------------------------------------
    def _referrer_dir(self, name: str, subject: str) -> str:
        algo, hexpart = check_digest(subject)
        return os.path.join(self._dir(name), "_referrers", algo, hexpart)

    def add_referrer(self, name: str, subject: str, descriptor: dict[str, Any]) -> None:
        entry = descriptor["digest"].replace(":", "-")
        write_atomic(os.path.join(self._referrer_dir(name, subject), entry),
                     json.dumps(descriptor).encode(), sync=False)

    def remove_referrer(self, name: str, subject: str, digest: str) -> None:
        d = self._referrer_dir(name, subject)
        if remove(os.path.join(d, digest.replace(":", "-"))):
            prune_empty_dirs(d, self._dir(name))

    def referrers(self, name: str, subject: str) -> list[dict[str, Any]]:
        d = self._referrer_dir(name, subject)
        out = []
        for entry in sorted(_listdir(d)):
            raw = read_text(os.path.join(d, entry))
            if raw is not None and not entry.startswith("."):
                out.append(json.loads(raw))
        return out

    # --- listing ------------------------------------------------------------------------------
    def names(self) -> list[str]:
        found: list[str] = []
        for dirpath, dirnames, _files in os.walk(self.root):
            if "_manifests" in dirnames or "_layers" in dirnames:
                found.append(os.path.relpath(dirpath, self.root).replace(os.sep, "/"))
            # never descend into our own link directories
            dirnames[:] = [d for d in dirnames if not d.startswith("_")]
        return sorted(found)


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []
