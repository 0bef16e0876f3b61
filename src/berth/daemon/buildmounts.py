"""`RUN --mount=...` for the builder: BuildKit's mount types on the legacy API's RUN containers.

dockerd's legacy builder refuses `--mount` ("requires BuildKit"); berth's builder runs them, so a
Dockerfile written for BuildKit builds through `POST /build` too:
- `cache`: a directory under the daemon's data root that outlives builds, keyed by `id` (default:
  the target), created with `mode`/`uid`/`gid`; `builder prune` empties it.
- `bind`: a path of the context (`source`, default its root) or of a stage or image (`from`);
  read-only by default; `rw` binds a private copy whose writes are thrown away, as BuildKit does.
- `tmpfs`: an empty tmpfs (`size`).
- `secret`/`ssh`: the legacy API carries neither, so a `required` one fails the step and an
  optional one is left out (BuildKit's behaviour when the client gives none).

A step's cache identity includes every mount and, for binds, the digest of the bound content,
so editing a bound file reruns the step; a cache mount's content never counts.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass

from berth.build.mounts import Mount

from . import buildfs, buildview

CACHE_DIR_MODE = 0o755


class MountFailed(buildview.CopyError):
    pass


@dataclass
class PlannedMount:
    mount: Mount
    view: buildview.TreeView | None = None  # where a bind's source lives
    source: str = ""  # the bind's source, relative to its view, symlinks resolved
    digest: str = ""  # content identity of a bind


def plan(mounts: list[Mount], context: buildview.TreeView,
         view_for: Callable[[str], buildview.TreeView]) -> tuple[list[PlannedMount], str]:
    """Check the mounts and compute their cache identity (blocking: binds are hashed)."""
    planned: list[PlannedMount] = []
    ident: list[list[object]] = []
    for m in mounts:
        if m.type in ("secret", "ssh"):
            if m.required:
                name = m.id or "default"
                raise MountFailed(f"{m.type} {name}: not provided (the legacy build API carries no "
                                  f"{m.type}s; the step needs it: required=true)")
            continue  # left out, as BuildKit does when the client has none to give
        p = PlannedMount(m)
        if m.type == "bind":
            p.view = view_for(m.from_) if m.from_ else context
            rel = p.view.resolve(m.source.lstrip("/"))
            if p.view._lookup_exact(rel) is None:
                where = f"stage or image {m.from_}" if m.from_ else "the build context"
                raise MountFailed(f"failed to compute cache key: \"/{m.source.lstrip('/')}\" not found in {where}")
            p.source = rel
            cplan = buildfs.plan_copy([(p.view, rel or ".")], [], "/mnt/", "/", None, "mount", False)
            p.digest = buildfs.copy_digest(cplan)
        elif m.type == "cache" and m.from_:
            raise MountFailed("cache mounts seeded from a stage or image (from=) are not supported")
        planned.append(p)
        ident.append([m.type, m.target, m.readonly, m.id, m.source, m.from_, m.sharing, m.mode, m.uid,
                      m.gid, m.size, p.digest])
    return planned, json.dumps(ident, separators=(",", ":"))


def host_mounts(planned: list[PlannedMount], work: str, cache_root: str) -> list[dict[str, object]]:
    """HostConfig.Mounts for the step's container; copies go under `work` (blocking)."""
    out: list[dict[str, object]] = []
    for p in planned:
        m = p.mount
        if m.type == "tmpfs":
            opts = {"SizeBytes": m.size} if m.size else {}
            out.append({"Type": "tmpfs", "Target": m.target, "TmpfsOptions": opts})
            continue
        if m.type == "cache":
            source = cache_dir(cache_root, m)
            out.append({"Type": "bind", "Source": source, "Target": m.target, "ReadOnly": m.readonly})
            continue
        assert p.view is not None
        if not m.from_ and m.readonly and len(p.view.dirs) == 1:
            source = os.path.join(p.view.dirs[0], p.source)  # the context itself, read-only
        else:
            source = os.path.join(work, "mount-" + os.urandom(6).hex())
            buildfs.materialize(p.view, p.source, source)
        out.append({"Type": "bind", "Source": source, "Target": m.target, "ReadOnly": m.readonly})
    return out


def cache_dir(root: str, m: Mount) -> str:
    """The lasting directory of a cache mount, made on first use with its mode and owner."""
    key = hashlib.sha256((m.id or m.target).encode("utf-8", "surrogateescape")).hexdigest()[:32]
    path = os.path.join(root, key)
    if not os.path.isdir(path):
        tmp = path + ".new-" + os.urandom(4).hex()
        os.makedirs(tmp)
        os.chmod(tmp, CACHE_DIR_MODE if m.mode is None else m.mode)
        os.chown(tmp, m.uid or 0, m.gid or 0)
        try:
            os.rename(tmp, path)
        except OSError:  # another build made it first
            os.rmdir(tmp)
    return path


def cache_usage(root: str) -> list[tuple[str, int, float]]:
    """(directory name, bytes, last used) of every cache mount directory."""
    out = []
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    for name in names:
        path = os.path.join(root, name)
        size = 0
        for top, _dirs, files in os.walk(path):
            for f in files:
                try:
                    size += os.lstat(os.path.join(top, f)).st_blocks * 512
                except OSError:
                    pass
        out.append((name, size, os.stat(path).st_mtime))
    return out
