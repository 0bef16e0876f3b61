"""Garbage collection: mark every blob a manifest in any repository needs, sweep the rest.

Offline (grace 0): only while no registry serves the root. Online (`--online`, a grace period):
a push in flight has blobs no manifest references yet, so a blob is swept only if it and every
link to it are older than the grace; the server touches a link whenever a client uploads,
mounts, HEADs or GETs the blob, so a client that just found a blob can still reference it.
Upload sessions younger than the grace stay too. Links to swept blobs are removed first, so a
repository never lists what is gone.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field

from . import manifests as mf
from .blobs import BlobStore
from .repos import Repositories


@dataclass
class GcReport:
    kept: int = 0
    removed: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    uploads_removed: int = 0


def mark(blobs: BlobStore, repos: Repositories) -> set[str]:
    live: set[str] = set()
    for name in repos.names():
        for digest in repos.manifests(name):
            live.add(digest)
            body = blobs.read(digest)
            media_type = repos.manifest_media_type(name, digest)
            if body is None or media_type is None:
                continue
            try:
                parsed = mf.parse(body, media_type)
            except Exception:  # noqa: BLE001 - keep what we cannot read rather than guess
                continue
            # Foreign layers are not in `parsed.blobs`, but if we hold them they are still used.
            live.update(parsed.blobs)
            live.update(_foreign_layers(body))
    return live


def _foreign_layers(body: bytes) -> list[str]:
    try:
        doc = json.loads(body)
        return [layer["digest"] for layer in doc.get("layers", []) if isinstance(layer, dict) and "digest" in layer]
    except (ValueError, TypeError, AttributeError):
        return []


def _newest_mtime(path: str) -> float:
    newest = 0.0
    for dirpath, _dirs, files in os.walk(path):
        for name in [".", *files]:
            try:
                newest = max(newest, os.stat(os.path.join(dirpath, name)).st_mtime)
            except FileNotFoundError:
                continue
    return newest


def _recent(path: str, repos: Repositories, digest: str, cutoff: float) -> bool:
    try:
        if os.stat(path).st_mtime > cutoff:
            return True
    except FileNotFoundError:
        return False
    return any(t > cutoff for t in repos.blob_link_times(digest))


def collect(root: str, dry_run: bool = False, uploads: bool = True, grace: float = 0.0) -> GcReport:
    blobs, repos = BlobStore(root), Repositories(root)
    cutoff = time.time() - grace
    live = mark(blobs, repos)
    report = GcReport()
    for digest in list(blobs.digests()):
        if digest in live or (grace and _recent(blobs.path(digest), repos, digest, cutoff)):
            report.kept += 1
            continue
        report.removed.append(digest)
        report.freed_bytes += blobs.size(digest) or 0
        if not dry_run:
            for name in repos.names():
                repos.unlink_blob(name, digest)
            blobs.delete(digest)
    if uploads and not dry_run:
        upload_root = os.path.join(root, "_uploads")
        for uuid in os.listdir(upload_root):
            path = os.path.join(upload_root, uuid)
            if grace and _newest_mtime(path) > cutoff:
                continue
            shutil.rmtree(path, ignore_errors=True)
            report.uploads_removed += 1
    return report
