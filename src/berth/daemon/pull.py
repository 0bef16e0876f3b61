"""`POST /images/create?fromImage=`: pull an image from a registry into the image store.

Manifest (an index resolves to the host's platform) -> config -> layers, up to three downloading
at once into the content store, each committed only when its digest matches; unpacking starts
with the bottom layer as soon as it is in, while the others still download. Progress messages
are dockerd's. The compressed blobs are dropped after unpacking (the store keeps the uncompressed
tar); their digests are remembered per DiffID for a later push.
"""

from __future__ import annotations

import functools
import json
import platform as _platform
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, BinaryIO

from berth.common import reference
from berth.common.digest import chain_ids, is_digest
from berth.common.errors import InvalidParameter, NotFound
from berth.images.store import ImageStore, NewLayer
from berth.registry.client import Credentials, RegistryError, Repository
from berth.registry.client.repository import parse_platform, select_platform

from .distribution import BlobSource, BlobSources, Emit, RegistrySettings, Throttle, progress_bar, short

GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}
CONCURRENCY = 3


def parse_pull_ref(image: str, tag: str) -> reference.Reference:
    """fromImage and tag as dockerd combines them: the tag may be a digest; default `latest`."""
    try:
        ref = reference.parse(image)
    except reference.InvalidReference as e:
        raise InvalidParameter(str(e)) from None
    if tag:
        if is_digest(tag):
            return reference.Reference(ref.domain, ref.path, None, tag)
        if not reference._TAG_RE.match(tag):
            raise InvalidParameter(f"invalid tag format: {tag}")
        return reference.Reference(ref.domain, ref.path, tag, None)
    return ref.with_default_tag()


class Puller:
    def __init__(self, store: ImageStore, sources: BlobSources, settings: RegistrySettings) -> None:
        self.store = store
        self.sources = sources
        self.settings = settings

    def pull(self, ref: reference.Reference, platform: str, creds: Credentials, emit: Emit) -> str:
        """Blocking; returns the image ID."""
        repo = self.settings.repository(ref.domain, ref.path, creds)
        try:
            return self._pull(repo, ref, platform, emit)
        finally:
            repo.session.close()

    def _pull(self, repo: Repository, ref: reference.Reference, platform: str, emit: Emit) -> str:
        want = ref.digest or ref.tag or "latest"
        try:
            top = repo.get_manifest(want)
        except RegistryError as e:
            if e.http_status in (401, 403) or e.code in ("NAME_UNKNOWN",):
                raise NotFound(f"pull access denied for {ref.familiar_name}, repository does not exist or may "
                               f"require 'docker login': {e.message}") from None
            raise
        manifest = top
        if top.is_index:
            os_, arch, variant = parse_platform(platform, "linux", GO_ARCH.get(_platform.machine(),
                                                                                _platform.machine()))
            entry = select_platform(top.json, os_, arch, variant)
            if entry is None:
                want_p = "/".join(p for p in (os_, arch, variant) if p)
                raise NotFound(f"no matching manifest for {want_p} in the manifest list entries")
            manifest = repo.get_manifest(str(entry["digest"]))
            if manifest.is_index:
                raise InvalidParameter("nested image indexes are not supported")
        body = manifest.json
        config_desc = body.get("config") or {}
        layer_descs: list[dict[str, Any]] = list(body.get("layers") or [])
        emit({"status": f"Pulling from {ref.path}", "id": want})

        config_digest = str(config_desc.get("digest", ""))
        if not is_digest(config_digest):
            raise InvalidParameter(f"manifest of {ref} has no valid config digest")
        config_chunks: list[bytes] = []
        repo.fetch_blob(config_digest, config_chunks.append)
        config_bytes = b"".join(config_chunks)
        config = json.loads(config_bytes)
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        if len(diff_ids) != len(layer_descs):
            raise InvalidParameter(f"image config of {ref} lists {len(diff_ids)} layers, its manifest "
                                   f"{len(layer_descs)}")
        chains = chain_ids(diff_ids)

        canon_tag = f"{ref.name}:{ref.tag}" if ref.tag else None
        before = self._tag_target(canon_tag) if canon_tag else None
        have = [self._have_layer(c) for c in chains]
        for desc, present in zip(layer_descs, have, strict=True):
            emit({"status": "Already exists" if present else "Pulling fs layer", "progressDetail": {},
                  "id": short(str(desc["digest"]))})

        pool = ThreadPoolExecutor(CONCURRENCY, thread_name_prefix="pull")
        futures: list[Future[str] | None] = []
        fetched: list[str] = []
        try:
            for desc, present in zip(layer_descs, have, strict=True):
                if present:
                    futures.append(None)
                    continue
                futures.append(pool.submit(self._download, repo, desc, emit))
            opened: list[str] = []
            lock = threading.Lock()

            def opener(i: int) -> BinaryIO:
                fut = futures[i]
                assert fut is not None
                digest = fut.result()
                with lock:
                    if opened:
                        emit({"status": "Pull complete", "progressDetail": {}, "id": short(opened[-1])})
                    opened.append(digest)
                emit({"status": "Extracting", "progressDetail": {}, "id": short(digest)})
                return self.store.content.open(digest)

            layers = [NewLayer(open=functools.partial(opener, i)) for i in range(len(layer_descs))]
            img, _ = self.store.add(config_bytes, layers, [canon_tag] if canon_tag else [])
            if opened:
                emit({"status": "Pull complete", "progressDetail": {}, "id": short(opened[-1])})
            fetched = [f.result() for f in futures if f is not None]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            for f in futures:
                if f is not None and f.done() and not f.exception():
                    self._drop_compressed(f.result())

        registry = repo.session.endpoint.name
        for desc, diff_id in zip(layer_descs, diff_ids, strict=True):
            self.sources.record(diff_id, BlobSource(str(desc["digest"]), int(desc.get("size") or 0),
                                                    str(desc.get("mediaType") or ""), registry, ref.path))
        del fetched
        self.store.add_digest_ref(img.id, ref.name, top.digest)
        shown = str(ref)
        emit({"status": f"Digest: {top.digest}"})
        if before == img.id:
            emit({"status": f"Status: Image is up to date for {shown}"})
        else:
            emit({"status": f"Status: Downloaded newer image for {shown}"})
        return img.id

    def _download(self, repo: Repository, desc: dict[str, Any], emit: Emit) -> str:
        digest = str(desc.get("digest", ""))
        if not is_digest(digest):
            raise InvalidParameter(f"invalid layer digest {digest!r}")
        total = int(desc.get("size") or 0)
        sid = short(digest)
        content = self.store.content
        if content.exists(digest):
            emit({"status": "Download complete", "progressDetail": {}, "id": sid})
            return digest
        throttle = Throttle()

        def progress(done: int) -> None:
            if throttle.ready() or done == total:
                emit({"status": "Downloading", "progressDetail": {"current": done, "total": total},
                      "progress": progress_bar(done, total), "id": sid})

        w = content.writer()
        try:
            repo.fetch_blob(digest, w.write, progress, verify=False)
            emit({"status": "Verifying Checksum", "progressDetail": {}, "id": sid})
            w.commit(expected=digest)  # raises DigestMismatch: nothing is committed
        except BaseException:
            w.abort()
            raise
        emit({"status": "Download complete", "progressDetail": {}, "id": sid})
        return digest

    def _drop_compressed(self, digest: str) -> None:
        """Remove a downloaded blob unless the store uses it (an uncompressed layer is its own tar)."""
        db = self.store.db
        if db.query("SELECT 1 FROM layers WHERE blob=?", (digest,)) or db.query(
                "SELECT 1 FROM images WHERE id=?", (digest,)):
            return
        self.store.content.delete(digest)

    def _have_layer(self, chain: str) -> bool:
        return bool(self.store.db.query("SELECT 1 FROM layers WHERE chain_id=?", (chain,))) and \
            self.store.layers.has(chain)

    def _tag_target(self, canon: str) -> str | None:
        rows = self.store.db.query("SELECT image_id FROM tags WHERE ref=?", (canon,))
        return rows[0]["image_id"] if rows else None
