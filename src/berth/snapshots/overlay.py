"""Overlay snapshotter: unpacked layers keyed by ChainID, and per-container writable layers.

Layout under `<root>`:
  <chain-hex>/diff   the layer's files (overlay form: whiteouts are char 0/0, opaque dirs xattr)
  <chain-hex>/link   the short name of this layer in l/
  <chain-hex>/tar-split, stash/   what rebuilds the layer's tar from diff/ (tarsplit.py)
  l/<short>          symlink to ../<chain-hex>/diff; keeps mount options short (mount(2) caps
                     options at one page: ~100 layers fit with short names, ~40 with full paths)
  rw/<id>/upper, rw/<id>/work   a container's writable layer
It returns mount specs and never mounts: the runtime does (see STYLE.md).
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Collection
from dataclasses import dataclass
from typing import BinaryIO

from berth.common.digest import sha256_bytes, split
from berth.common.errors import InvalidParameter, NotFound

from .tarapply import AppliedLayer, apply_layer
from .tarsplit import SPLIT_FILE, STASH_DIR, has_split, open_split


@dataclass(frozen=True)
class Mount:
    type: str
    source: str
    options: list[str]


class LayerStore:
    """Layers are immutable once `apply` returns; a writable layer lives from `prepare` to
    `remove_rw`. Removing a layer is only valid when nothing (image or container) uses it:
    the image store keeps the references."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._links = os.path.join(root, "l")
        self._rw = os.path.join(root, "rw")
        self._empty = os.path.join(root, "empty")
        for d in (self._links, self._rw, self._empty):
            os.makedirs(d, exist_ok=True)

    def _dir(self, chain_id: str) -> str:
        return os.path.join(self.root, split(chain_id)[1])

    def has(self, chain_id: str) -> bool:
        return os.path.isdir(os.path.join(self._dir(chain_id), "diff"))

    def diff_dir(self, chain_id: str) -> str:
        return os.path.join(self._dir(chain_id), "diff")

    def apply(self, parent: str | None, stream: BinaryIO,
              expected_diff_id: str | None = None) -> tuple[str, AppliedLayer]:
        """Unpack a layer tar on top of `parent` (a ChainID); returns (ChainID, what was applied).
        The DiffID is verified before the layer becomes visible."""
        tmp = os.path.join(self.root, "tmp-" + os.urandom(8).hex())
        os.makedirs(os.path.join(tmp, "diff"))
        try:
            applied = apply_layer(stream, os.path.join(tmp, "diff"), split_dir=tmp)
            if expected_diff_id and applied.diff_id != expected_diff_id:
                raise InvalidParameter(
                    f"layer content does not match its DiffID: expected {expected_diff_id}, "
                    f"got {applied.diff_id}")
            chain_id = applied.diff_id if parent is None else sha256_bytes(
                f"{parent} {applied.diff_id}".encode())
            final = self._dir(chain_id)
            if os.path.isdir(final):
                if not has_split(final):
                    # left by a crash before tar-splits or before its record: the same DiffID
                    # means the same tar, so this split (and its stash) describes it as well
                    for name in (SPLIT_FILE, STASH_DIR):
                        if os.path.exists(os.path.join(tmp, name)):
                            os.rename(os.path.join(tmp, name), os.path.join(final, name))
                shutil.rmtree(tmp)
                return chain_id, applied
            short = os.urandom(13).hex().upper()[:26]
            with open(os.path.join(tmp, "link"), "w") as f:
                f.write(short)
            with open(os.path.join(tmp, "parent"), "w") as f:
                f.write(parent or "")
            os.symlink(os.path.join("..", split(chain_id)[1], "diff"), os.path.join(self._links, short))
            os.rename(tmp, final)
            return chain_id, applied
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def has_tar(self, chain_id: str) -> bool:
        """Whether the layer can rebuild its tar (every layer applied since tar-splits exist)."""
        return has_split(self._dir(chain_id))

    def open_tar(self, chain_id: str, diff_id: str) -> BinaryIO:
        """The layer's tar, byte for byte as it was applied, rebuilt from its files; the read that
        ends it raises if the result does not hash to `diff_id`."""
        d = self._dir(chain_id)
        if not has_split(d):
            raise NotFound(f"layer {chain_id} has no record of its tar")
        return open_split(d, os.path.join(d, "diff"), diff_id)

    def _lower_chain(self, chain_id: str) -> list[str]:
        """Short link paths, topmost layer first."""
        out = []
        cur: str | None = chain_id
        while cur:
            d = self._dir(cur)
            try:
                with open(os.path.join(d, "link")) as f:
                    out.append(os.path.join(self._links, f.read().strip()))
                with open(os.path.join(d, "parent")) as f:
                    cur = f.read().strip() or None
            except FileNotFoundError:
                raise NotFound(f"layer {cur} is missing from the layer store") from None
        return out

    def prepare(self, key: str, parent: str | None) -> Mount:
        """Create (or reuse) the writable layer `key` over `parent`; returns its overlay mount."""
        rw = os.path.join(self._rw, key)
        os.makedirs(os.path.join(rw, "upper"), exist_ok=True)
        os.makedirs(os.path.join(rw, "work"), exist_ok=True)
        return self.mount_spec(key, parent)

    def mount_spec(self, key: str, parent: str | None) -> Mount:
        rw = os.path.join(self._rw, key)
        lowers = self._lower_chain(parent) if parent else [self._empty]
        opts = [f"lowerdir={':'.join(lowers)}", f"upperdir={rw}/upper", f"workdir={rw}/work"]
        if len(",".join(opts)) > 4000:
            raise InvalidParameter(f"too many layers to mount ({len(lowers)})")
        return Mount("overlay", "overlay", opts)

    def upper_dir(self, key: str) -> str:
        return os.path.join(self._rw, key, "upper")

    def changes(self, key: str, parent: str | None, hidden: Collection[str] = ()) -> list[tuple[str, int]]:
        """What the writable layer `key` changed over `parent`, sorted by path: docker's
        (path, kind) with kind 0 modified, 1 added, 2 deleted. Read from the upper directory
        (whiteouts are 0/0 character devices), so it needs no mount. `hidden`: mount points the
        runtime created (dockerd keeps those in an init layer), left out with the directories
        that were copied up only to hold them."""
        upper = self.upper_dir(key)
        lowers = self._lower_chain(parent) if parent else []
        out: list[tuple[str, int]] = []
        for dirpath, dirs, files in os.walk(upper):
            for name in dirs + files:
                full = os.path.join(dirpath, name)
                rel = "/" + os.path.relpath(full, upper)
                st = os.lstat(full)
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    out.append((rel, 2))
                elif rel not in hidden:
                    out.append((rel, 0 if _in_lowers(lowers, rel) else 1))
        out.sort()
        holders = {os.path.dirname(h) for h in hidden}
        return [(p, k) for p, k in out
                if not (k == 0 and p in holders and not any(q.startswith(p + "/") for q, _ in out))]

    def rw_keys(self) -> list[str]:
        return os.listdir(self._rw)

    def remove_rw(self, key: str) -> None:
        shutil.rmtree(os.path.join(self._rw, key), ignore_errors=True)

    def remove(self, chain_id: str) -> None:
        d = self._dir(chain_id)
        try:
            with open(os.path.join(d, "link")) as f:
                os.unlink(os.path.join(self._links, f.read().strip()))
        except FileNotFoundError:
            pass
        # rename first so a crash never leaves a half-deleted layer that looks whole
        trash = os.path.join(self.root, "tmp-rm-" + os.urandom(8).hex())
        try:
            os.rename(d, trash)
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    def clean_tmp(self) -> None:
        for name in os.listdir(self.root):
            if name.startswith("tmp-"):
                shutil.rmtree(os.path.join(self.root, name), ignore_errors=True)

    def disk_usage(self, chain_id: str) -> int:
        return _du(self.diff_dir(chain_id))

    def rw_usage(self, key: str) -> int:
        """Bytes in a writable layer (SizeRw)."""
        return _du(self.upper_dir(key))


def _du(path: str) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def _in_lowers(lowers: list[str], rel: str) -> bool:
    """Whether `rel` exists in the lower layers (topmost first), minding their whiteouts."""
    for lower in lowers:
        try:
            st = os.lstat(os.path.join(lower, rel.lstrip("/")))
        except (FileNotFoundError, NotADirectoryError):
            continue
        return not (stat.S_ISCHR(st.st_mode) and st.st_rdev == 0)
    return False
