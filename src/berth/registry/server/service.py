"""The registry's behaviour, independent of HTTP: what each distribution operation does to storage.

Handlers in `routes_*.py` parse a request, call one method here and shape the answer. Every
operation keeps the invariant that a link (tag, manifest, layer) only ever points at content
that is fully written and verified.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from . import manifests as mf
from .blobs import BlobStore
from .errors import (
    blob_unknown,
    blob_upload_invalid,
    blob_upload_unknown,
    digest_invalid,
    manifest_blob_unknown,
    manifest_invalid,
    manifest_unknown,
    name_unknown,
    range_invalid,
    unsupported,
)
from .names import check_digest, check_name, check_tag, is_digest_reference, paginate
from .repos import Repositories
from .uploads import UploadStore


@dataclass
class Config:
    root: str
    delete_enabled: bool = False
    max_manifest_bytes: int = mf.MAX_MANIFEST_BYTES


@dataclass
class StoredManifest:
    digest: str
    media_type: str
    body: bytes


def upload_range(size: int) -> str:
    # Range is inclusive; an empty upload is reported as 0-0, as distribution does.
    return f"0-{max(size - 1, 0)}"


class Registry:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.blobs = BlobStore(config.root)
        self.uploads = UploadStore(config.root)
        self.repos = Repositories(config.root)

    # --- blobs --------------------------------------------------------------------------------
    def stat_blob(self, repo: str, digest: str) -> tuple[str, int]:
        check_digest(digest)
        size = self.blobs.size(digest) if self.repos.has_blob(repo, digest) else None
        if size is None:
            raise blob_unknown(digest)
        # A client that found the blob may reference it in a manifest next: online gc must wait.
        self.repos.touch_blob(repo, digest)
        return self.blobs.path(digest), size

    def delete_blob(self, repo: str, digest: str) -> None:
        self._require_delete()
        check_digest(digest)
        # Only the link goes; the bytes stay until gc, since other repositories may share them.
        if not self.repos.unlink_blob(repo, digest):
            raise blob_unknown(digest)

    def mount_blob(self, repo: str, source: str, digest: str) -> bool:
        check_name(source)
        check_digest(digest)
        if not self.repos.has_blob(source, digest) or self.blobs.size(digest) is None:
            return False
        self.repos.link_blob(repo, digest)
        return True

    # --- uploads ------------------------------------------------------------------------------
    def start_upload(self, repo: str, algo: str = "sha256") -> str:
        return self.uploads.create(repo, algo)

    def upload_size(self, repo: str, uuid: str) -> int:
        return self.uploads.session(repo, uuid).size

    async def append_upload(self, repo: str, uuid: str, body: AsyncIterator[bytes],
                            content_range: str | None, length: int | None) -> int:
        s = self.uploads.session(repo, uuid)
        async with s.lock:
            self._still_live(repo, uuid, s)
            if content_range is not None:
                self._check_range(repo, uuid, s.size, content_range, length)
            return await self.uploads.append(s, uuid, body)

    async def finish_upload(self, repo: str, uuid: str, digest: str | None, body: AsyncIterator[bytes],
                            content_range: str | None, length: int | None) -> str:
        if not digest:
            raise digest_invalid("the digest parameter is required")
        check_digest(digest)
        s = self.uploads.session(repo, uuid)
        async with s.lock:
            self._still_live(repo, uuid, s)
            if content_range is not None:
                self._check_range(repo, uuid, s.size, content_range, length)
            await self.uploads.append(s, uuid, body)
            path = await self.uploads.commit(s, uuid, digest)
            self.blobs.adopt(path, digest)
            self.uploads.finish(uuid)
        self.repos.link_blob(repo, digest)
        return digest

    def cancel_upload(self, repo: str, uuid: str) -> None:
        self.uploads.session(repo, uuid)  # 404 for unknown sessions
        self.uploads.cancel(uuid)

    def _still_live(self, repo: str, uuid: str, s: object) -> None:
        """A request that waited for the session's lock may find it finished or cancelled."""
        if self.uploads.session(repo, uuid) is not s:
            raise blob_upload_unknown(uuid)

    def _check_range(self, repo: str, uuid: str, size: int, content_range: str, length: int | None) -> None:
        start_s, _, end_s = content_range.removeprefix("bytes=").strip().partition("-")
        headers = [("Location", f"/v2/{repo}/blobs/uploads/{uuid}"), ("Range", upload_range(size)),
                   ("Docker-Upload-UUID", uuid)]
        if not (start_s.isdigit() and end_s.isdigit()):
            raise blob_upload_invalid(f"invalid Content-Range: {content_range!r}")
        start, end = int(start_s), int(end_s)
        if start != size or end < start:
            raise range_invalid(f"chunk {start}-{end} does not continue the upload at offset {size}", headers)
        if length is not None and end - start + 1 != length:
            raise range_invalid(f"Content-Range {start}-{end} does not match Content-Length {length}", headers)

    # --- manifests ----------------------------------------------------------------------------
    def resolve(self, repo: str, reference: str) -> str:
        if is_digest_reference(reference):
            check_digest(reference)
            return reference
        digest = self.repos.resolve_tag(repo, check_tag(reference))
        if digest is None:
            raise manifest_unknown(reference)
        return digest

    def get_manifest(self, repo: str, reference: str) -> StoredManifest:
        digest = self.resolve(repo, reference)
        media_type = self.repos.manifest_media_type(repo, digest)
        body = self.blobs.read(digest) if media_type is not None else None
        if media_type is None or body is None:
            raise manifest_unknown(reference)
        return StoredManifest(digest, media_type, body)

    def put_manifest(self, repo: str, reference: str, body: bytes, content_type: str | None,
                     extra_tags: list[str]) -> tuple[str, mf.ParsedManifest]:
        if len(body) > self.config.max_manifest_bytes:
            raise manifest_invalid(f"manifest is larger than {self.config.max_manifest_bytes} bytes", 413)
        parsed = mf.parse(body, content_type)
        if is_digest_reference(reference):
            algo, hexpart = check_digest(reference)
            if hashlib.new(algo, body).hexdigest() != hexpart:
                raise digest_invalid("manifest digest did not match its content", reference)
            tags = extra_tags
        else:
            algo, tags = "sha256", [reference, *extra_tags]
        for tag in tags:
            check_tag(tag)
        for digest in parsed.blobs:
            if not self.repos.has_blob(repo, digest) or self.blobs.size(digest) is None:
                raise manifest_blob_unknown(digest)
        for digest in parsed.children:
            if self.repos.manifest_media_type(repo, digest) is None:
                raise manifest_blob_unknown(digest)
        # Bytes first, then the manifest link, then the referrer entry and tags: each step only
        # points at what the previous ones made durable.
        digest = self.blobs.put(body, algo)
        self.repos.link_manifest(repo, digest, parsed.media_type)
        if parsed.subject:
            self.repos.add_referrer(repo, parsed.subject, parsed.referrer_descriptor(digest, len(body)))
        for tag in tags:
            self.repos.set_tag(repo, tag, digest)
        return digest, parsed

    def delete_manifest(self, repo: str, reference: str) -> None:
        self._require_delete()
        if not is_digest_reference(reference):
            # OCI 1.1: deleting by tag removes only the tag.
            if not self.repos.delete_tag(repo, check_tag(reference)):
                raise manifest_unknown(reference)
            return
        stored = self.get_manifest(repo, reference)
        try:
            subject = mf.parse(stored.body, stored.media_type).subject
        except Exception:  # noqa: BLE001 - a manifest we once accepted; deleting it must not fail
            subject = None
        for tag in self.repos.tags(repo):
            if self.repos.resolve_tag(repo, tag) == stored.digest:
                self.repos.delete_tag(repo, tag)
        if subject:
            self.repos.remove_referrer(repo, subject, stored.digest)
        self.repos.unlink_manifest(repo, stored.digest)

    # --- discovery ----------------------------------------------------------------------------
    def tags(self, repo: str, n: int | None, last: str | None) -> tuple[list[str], bool]:
        if not self.repos.exists(repo):
            raise name_unknown(repo)
        return paginate(self.repos.tags(repo), n, last)

    def catalog(self, n: int | None, last: str | None) -> tuple[list[str], bool]:
        return paginate(self.repos.names(), n, last)

    def referrers(self, repo: str, subject: str, artifact_type: str | None) -> list[dict[str, Any]]:
        check_digest(subject)
        found = self.repos.referrers(repo, subject)
        if artifact_type:
            found = [d for d in found if d.get("artifactType") == artifact_type]
        return found

    def _require_delete(self) -> None:
        if not self.config.delete_enabled:
            raise unsupported("deletes are disabled on this registry (start it with --delete)")
