"""Offline garbage collection: mark every blob a manifest in any repository needs, sweep the rest.

Run it only while no registry serves the root: a push in flight has blobs that no manifest
references yet, and this would delete them. Links to swept blobs are removed too, so a
repository never lists what is gone. Stale upload sessions are dropped as well.
"""

from __future__ import annotations

import json
import os
import shutil
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


def collect(root: str, dry_run: bool = False, uploads: bool = True) -> GcReport:
    blobs, repos = BlobStore(root), Repositories(root)
    live = mark(blobs, repos)
    report = GcReport()
    for digest in list(blobs.digests()):
        if digest in live:
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
            shutil.rmtree(os.path.join(upload_root, uuid), ignore_errors=True)
            report.uploads_removed += 1
    return report
