"""`POST /images/create?fromImage=`: pull an image from a registry into the image store.

Manifest (an index resolves to the host's platform) -> config -> layers, up to three at once.
Each layer is one pass: the HTTP body is hashed, decompressed once and unpacked, keeping only a
tar-split to rebuild its tar for push and save; a dropped connection resumes with a Range request.
Nothing commits unless both the compressed digest and the DiffID match. The compressed bytes are
never stored; their digests are remembered per DiffID for a later push. Progress messages are
dockerd's.
"""

from __future__ import annotations

import json
import logging
import platform as _platform
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, BinaryIO, TypeVar

from berth.common import reference
from berth.common.digest import chain_ids, is_digest
from berth.common.errors import InvalidParameter, NotFound
from berth.images.store import ImageStore, NewLayer, UnpackedLayer
from berth.registry.client import Credentials, RegistryError, Repository
from berth.registry.client.repository import Manifest, parse_platform, select_platform

from .distribution import BlobSource, BlobSources, Emit, RegistrySettings, Throttle, progress_bar, short

log = logging.getLogger("berth.pull")
GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}
CONCURRENCY = 3
T = TypeVar("T")


def _oci_platform(src: dict[str, Any]) -> dict[str, Any]:
    """An OCI platform (dockerd's field names) from an index entry's platform or an image config."""
    out: dict[str, Any] = {"architecture": src.get("architecture", ""), "os": src.get("os", "")}
    for key in ("os.version", "os.features", "variant"):
        if src.get(key):
            out[key] = src[key]
    return out


def _vanished() -> BinaryIO:
    # a layer present when the pull began was removed before the image was recorded
    raise NotFound("a layer of the image was removed during the pull; pull again")


def wants_all_tags(image: str, tag: str) -> bool:
    """dockerd pulls every tag when neither fromImage nor tag names one (`docker pull -a`)."""
    try:
        ref = reference.parse(image)
    except reference.InvalidReference:
        return False
    return not tag and not ref.tag and not ref.digest


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

    def _on_repository(self, ref: reference.Reference, creds: Credentials, work: Callable[[Repository], T]) -> T:
        """`work` on the image's repository. A docker.io image is tried on each mirror first, as
        dockerd does: any failure there (down, missing, refused) falls through to the next."""
        for endpoint in self.settings.mirror_endpoints(ref.domain):
            mirror = self.settings.mirror_repository(endpoint, ref.path, Credentials())
            try:
                return work(mirror)
            except (RegistryError, NotFound) as e:
                log.info("mirror %s: %s; trying the next", endpoint.name, e)
            finally:
                mirror.session.close()
        repo = self.settings.repository(ref.domain, ref.path, creds)
        try:
            return work(repo)
        finally:
            repo.session.close()

    def pull(self, ref: reference.Reference, platform: str, creds: Credentials, emit: Emit) -> str:
        """Blocking; returns the image ID."""
        return self._on_repository(ref, creds, lambda repo: self._pull(repo, ref, platform, emit))

    def pull_all_tags(self, ref: reference.Reference, platform: str, creds: Credentials, emit: Emit) -> None:
        """`docker pull -a` (fromImage with no tag): every tag of the repository, one by one."""
        def work(repo: Repository) -> bool:
            try:
                tags = repo.list_tags()
            except RegistryError as e:
                raise NotFound(f"pull access denied for {ref.familiar_name}, repository does not exist or may "
                               f"require 'docker login': {e.message}") from None
            updated = False
            for tag in tags:
                tagged = reference.Reference(ref.domain, ref.path, tag, None)
                before = self._tag_target(f"{ref.name}:{tag}")
                updated |= self._pull(repo, tagged, platform, emit, final=False) != before
            return updated

        word = "Downloaded newer image" if self._on_repository(ref, creds, work) else "Image is up to date"
        emit({"status": f"Status: {word} for {ref.name}"})

    def inspect(self, ref: reference.Reference, creds: Credentials) -> dict[str, Any]:
        """`GET /distribution/{name}/json`: the manifest's descriptor and the platforms it serves
        (an index's entries, or a single image's config), read from the registry, not pulled."""
        def work(repo: Repository) -> dict[str, Any]:
            top = self._get_manifest(repo, ref, ref.digest or ref.tag or "latest")
            body = top.json
            if top.is_index:
                platforms = [_oci_platform(m.get("platform") or {}) for m in body.get("manifests") or []]
            else:
                config_digest = str((body.get("config") or {}).get("digest", ""))
                if not is_digest(config_digest):
                    raise InvalidParameter(f"manifest of {ref} has no valid config digest")
                chunks: list[bytes] = []
                repo.fetch_blob(config_digest, chunks.append)
                platforms = [_oci_platform(json.loads(b"".join(chunks)))]
            return {"Descriptor": {"mediaType": top.media_type, "digest": top.digest, "size": len(top.raw)},
                    "Platforms": platforms}

        return self._on_repository(ref, creds, work)

    @staticmethod
    def _get_manifest(repo: Repository, ref: reference.Reference, want: str) -> Manifest:
        try:
            return repo.get_manifest(want)
        except RegistryError as e:
            if e.http_status in (401, 403) or e.code in ("NAME_UNKNOWN",):
                raise NotFound(f"pull access denied for {ref.familiar_name}, repository does not exist or may "
                               f"require 'docker login': {e.message}") from None
            raise

    def _pull(self, repo: Repository, ref: reference.Reference, platform: str, emit: Emit,
              final: bool = True) -> str:
        want = ref.digest or ref.tag or "latest"
        top = self._get_manifest(repo, ref, want)
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

        # Each layer streams from the registry through one decompression into its unpacked
        # directory, all layers at once; the store records them in order.
        parents: list[str | None] = [None, *chains[:-1]]
        pool = ThreadPoolExecutor(CONCURRENCY, thread_name_prefix="pull")
        futures: list[Future[UnpackedLayer] | None] = []
        try:
            for i, (desc, present) in enumerate(zip(layer_descs, have, strict=True)):
                futures.append(None if present else pool.submit(
                    self._fetch_layer, repo, desc, diff_ids[i], parents[i], emit))
            layers = [NewLayer(open=_vanished, unpacked=f.result() if f is not None else None) for f in futures]
            img, _ = self.store.add(config_bytes, layers, [canon_tag] if canon_tag else [])
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

        registry = repo.session.endpoint.name
        for desc, diff_id in zip(layer_descs, diff_ids, strict=True):
            self.sources.record(diff_id, BlobSource(str(desc["digest"]), int(desc.get("size") or 0),
                                                    str(desc.get("mediaType") or ""), registry, ref.path))
        self.store.add_digest_ref(img.id, ref.name, top.digest)
        shown = str(ref)
        emit({"status": f"Digest: {top.digest}"})
        if final:
            word = "Image is up to date" if before == img.id else "Downloaded newer image"
            emit({"status": f"Status: {word} for {shown}"})
        return img.id

    def _fetch_layer(self, repo: Repository, desc: dict[str, Any], diff_id: str, parent: str | None,
                     emit: Emit) -> UnpackedLayer:
        digest = str(desc.get("digest", ""))
        if not is_digest(digest):
            raise InvalidParameter(f"invalid layer digest {digest!r}")
        total = int(desc.get("size") or 0)
        sid = short(digest)
        throttle = Throttle()

        def progress(done: int) -> None:
            if throttle.ready() or done == total:
                emit({"status": "Downloading", "progressDetail": {"current": done, "total": total},
                      "progress": progress_bar(done, total), "id": sid})

        reader = repo.open_blob(digest, total if total > 0 else -1, progress)
        try:
            # the compressed digest is checked at the end of the stream, before anything commits
            unpacked = self.store.unpack_layer(parent, diff_id, reader, at_eof=reader.drain)  # type: ignore[arg-type]
        finally:
            reader.close()
        emit({"status": "Verifying Checksum", "progressDetail": {}, "id": sid})
        emit({"status": "Download complete", "progressDetail": {}, "id": sid})
        emit({"status": "Extracting", "progressDetail": {"current": total, "total": total},
              "progress": progress_bar(total, total), "id": sid})
        emit({"status": "Pull complete", "progressDetail": {}, "id": sid})
        return unpacked

    def _have_layer(self, chain: str) -> bool:
        return self.store.has_layer(chain)

    def _tag_target(self, canon: str) -> str | None:
        rows = self.store.db.query("SELECT image_id FROM tags WHERE ref=?", (canon,))
        return rows[0]["image_id"] if rows else None
