"""`POST /images/{name}/push`: push an image's layers, config and manifest to a registry.

Each layer goes the cheapest way that works: already in the repository (HEAD of a digest
remembered for its DiffID), mounted from another repository of the same registry, or gzipped
(isal or zlib, deterministic) and uploaded, up to three at a time. The manifest is docker's
v2 schema 2, so what dockerd would push, berth pushes.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

from berth.common import reference
from berth.common.errors import InvalidParameter, NotFound
from berth.images.store import Image, ImageStore
from berth.registry.client import Credentials, RegistryError, Repository
from berth.registry.client.compress import gzip_stream
from berth.registry.client.repository import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    OCI_LAYER_GZIP,
)

from .distribution import BlobSource, BlobSources, Emit, RegistrySettings, Throttle, progress_bar, short

CONCURRENCY = 3
GZIP_TYPES = (DOCKER_LAYER_GZIP, OCI_LAYER_GZIP)


class _CountingReader:
    """A file for http.client to send from, reporting how much went out."""

    def __init__(self, f: IO[bytes], total: int, report: Any) -> None:
        self._f = f
        self.total = total
        self.done = 0
        self._report = report

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self.done += len(data)
        self._report(self.done)
        return data

    def seek(self, pos: int, whence: int = 0) -> int:
        self.done = 0
        return self._f.seek(pos, whence)

    def sendfile_to(self, sock: socket.socket) -> None:
        """The rest of the file, from where it stands, by sendfile(2) in 8 MiB steps (progress)."""
        offset = self._f.tell()
        while offset < self.total:
            sent = sock.sendfile(self._f, offset, min(8 << 20, self.total - offset))
            if not sent:
                raise ConnectionError("the registry stopped taking the upload")
            offset += sent
            self.done += sent
            self._report(self.done)


class Pusher:
    def __init__(self, store: ImageStore, sources: BlobSources, settings: RegistrySettings, tmp_dir: str) -> None:
        self.store = store
        self.sources = sources
        self.settings = settings
        self.tmp_dir = tmp_dir

    def targets(self, name: str, tag: str) -> tuple[reference.Reference, list[tuple[str, Image]]]:
        try:
            ref = reference.parse(name)
        except reference.InvalidReference as e:
            raise InvalidParameter(str(e)) from None
        if ref.digest:
            raise InvalidParameter("cannot push a digest reference")
        tag = tag or ref.tag or ""
        if tag:
            try:
                return ref, [(tag, self.store.get(f"{ref.name}:{tag}"))]
            except NotFound:
                raise NotFound(f"tag does not exist: {ref.familiar_name}:{tag}") from None
        rows = self.store.db.query("SELECT ref FROM tags WHERE ref LIKE ? ORDER BY ref",
                                   (ref.name.replace("%", r"\%") + ":%",))
        out = []
        for r in rows:
            t = r["ref"][len(ref.name) + 1:]
            if "@" not in t and "/" not in t and ":" not in t:
                out.append((t, self.store.get(r["ref"])))
        if not out:
            raise NotFound(f"An image does not exist locally with the tag: {ref.familiar_name}")
        return ref, out

    def push(self, name: str, tag: str, creds: Credentials, emit: Emit) -> None:
        ref, targets = self.targets(name, tag)
        registry = self.settings.endpoint(ref.domain).name
        mount_from = set()
        for _, img in targets:
            for diff_id in img.diff_ids:
                for src in self.sources.of(diff_id):
                    if src.registry == registry and src.repo != ref.path:
                        mount_from.add(f"repository:{src.repo}:pull")
        repo = self.settings.repository(ref.domain, ref.path, creds, "pull,push", tuple(sorted(mount_from)))
        emit({"status": f"The push refers to repository [{ref.name}]"})
        try:
            for t, img in targets:
                self._push_image(repo, registry, ref, t, img, emit)
        finally:
            repo.session.close()

    def _push_image(self, repo: Repository, registry: str, ref: reference.Reference, tag: str, img: Image,
                    emit: Emit) -> None:
        pairs = list(zip(img.chains, img.diff_ids, strict=True))
        for _, diff_id in reversed(pairs):
            emit({"status": "Preparing", "progressDetail": {}, "id": short(diff_id)})
        for _, diff_id in reversed(pairs):
            emit({"status": "Waiting", "progressDetail": {}, "id": short(diff_id)})
        with ThreadPoolExecutor(CONCURRENCY, thread_name_prefix="push") as pool:
            futs = [pool.submit(self._push_layer, repo, registry, ref.path, chain, diff_id, emit)
                    for chain, diff_id in reversed(pairs)]
            descs = [f.result() for f in futs]
        descs.reverse()
        config = self.store.content.read(img.id)
        if repo.blob_exists(img.id) is None:
            repo.upload_blob(img.id, len(config), config)
        manifest = {
            "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "size": len(config), "digest": img.id},
            "layers": [{"mediaType": DOCKER_LAYER_GZIP, "size": d.size, "digest": d.digest} for d in descs],
        }
        raw = json.dumps(manifest, indent=3).encode()
        digest = repo.put_manifest(tag, raw, DOCKER_MANIFEST)
        self.store.add_digest_ref(img.id, ref.name, digest)
        emit({"status": f"{tag}: digest: {digest} size: {len(raw)}"})
        emit({"progressDetail": {}, "aux": {"Tag": tag, "Digest": digest, "Size": len(raw)}})

    def _push_layer(self, repo: Repository, registry: str, path: str, chain: str, diff_id: str,
                    emit: Emit) -> BlobSource:
        sid = short(diff_id)
        known = [s for s in self.sources.of(diff_id) if s.media_type in GZIP_TYPES or s.registry == ""]
        # 1. already in this repository, or anywhere on this registry under a digest we know
        for src in sorted(known, key=lambda s: (s.registry != registry or s.repo != path)):
            if src.registry not in (registry, ""):
                continue
            if src.registry == registry and src.repo != path:
                continue
            size = repo.blob_exists(src.digest)
            if size is not None:
                emit({"status": "Layer already exists", "progressDetail": {}, "id": sid})
                return self._remember(diff_id, src, registry, path)
            if src.registry == registry:
                self.sources.forget(diff_id, src.digest, src.registry, src.repo)
        # 2. mounted from another repository of this registry
        for src in known:
            if src.registry != registry or src.repo == path:
                continue
            try:
                location = repo.mount_blob(src.digest, src.repo)
            except RegistryError:
                continue
            if location is None:
                emit({"status": f"Mounted from {src.repo}", "progressDetail": {}, "id": sid})
                return self._remember(diff_id, src, registry, path)
            break  # the registry offered an upload instead; compress below
        # 3. compress and upload
        tmp = os.path.join(self.tmp_dir, "push-" + os.urandom(8).hex())
        try:
            # the rebuilt tar is checked against the DiffID as it ends, before anything is uploaded
            with self.store.open_layer_tar(chain) as src_f, open(tmp, "wb") as out:
                digest, size = gzip_stream(src_f, out)
            local = BlobSource(digest, size, DOCKER_LAYER_GZIP, "", "")
            self.sources.record(diff_id, local)
            if repo.blob_exists(digest) is not None:
                emit({"status": "Layer already exists", "progressDetail": {}, "id": sid})
                return self._remember(diff_id, local, registry, path)
            throttle = Throttle()
            lock = threading.Lock()

            def report(done: int) -> None:
                with lock:
                    if throttle.ready() or done == size:
                        emit({"status": "Pushing", "progressDetail": {"current": done, "total": size},
                              "progress": progress_bar(done, size), "id": sid})

            with open(tmp, "rb") as f:
                repo.upload_blob(digest, size, _CountingReader(f, size, report))  # type: ignore[arg-type]
        finally:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        emit({"status": "Pushed", "progressDetail": {}, "id": sid})
        return self._remember(diff_id, local, registry, path)

    def _remember(self, diff_id: str, src: BlobSource, registry: str, path: str) -> BlobSource:
        out = BlobSource(src.digest, src.size, DOCKER_LAYER_GZIP, registry, path)
        self.sources.record(diff_id, out)
        return out
