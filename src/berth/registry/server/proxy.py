"""Pull-through cache (`--proxy URL`): what a client asks for and this registry lacks is fetched
from the upstream registry, verified, stored, then served; later requests are served locally.

As distribution's proxy mode: a manifest asked for by tag is looked up upstream every time (so
tags move when upstream's do), and the local copy is served when upstream cannot be reached;
anything asked for by digest is immutable, so a local copy is never re-fetched. Pushes and
deletes are refused: the cache only mirrors. Upstream is spoken to with the registry client
(`berth.registry.client`), in a thread, so transfers never stall the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import urllib.parse

from berth.registry.client import Credentials, Repository
from berth.registry.client import RegistryError as UpstreamError
from berth.registry.client.endpoint import Endpoint
from berth.registry.client.session import Session

from .errors import RegistryError, blob_unknown, manifest_unknown, unsupported
from .names import check_digest, is_digest_reference
from .service import Registry

log = logging.getLogger("berth.registry.proxy")


class PullThrough:
    def __init__(self, registry: Registry, url: str, creds: Credentials) -> None:
        parts = urllib.parse.urlsplit(url if "://" in url else f"https://{url}")
        if not parts.netloc:
            raise ValueError(f"--proxy needs a URL like https://registry.example, got {url!r}")
        self.registry = registry
        self.endpoint = Endpoint(parts.netloc, parts.netloc, parts.scheme == "https")
        self.creds = creds
        self._schemes: dict[str, str] = {}
        self._fetching: dict[str, asyncio.Lock] = {}

    def _repo(self, name: str) -> Repository:
        session = Session(self.endpoint, self.creds, (f"repository:{name}:pull",), None, self._schemes)
        return Repository(session, name)

    @staticmethod
    def refuse_writes() -> RegistryError:
        return unsupported("this registry is a pull-through cache: pushes and deletes are not allowed")

    # --- manifests ----------------------------------------------------------------------------
    async def refresh_manifest(self, name: str, reference: str) -> None:
        """Bring the manifest `reference` of `name` from upstream into local storage, if needed."""
        reg = self.registry
        if is_digest_reference(reference):
            check_digest(reference)
            if reg.repos.manifest_media_type(name, reference) is not None:
                return

        def fetch() -> tuple[bytes, str]:
            repo = self._repo(name)
            try:
                m = repo.get_manifest(reference)
                return m.raw, m.media_type
            finally:
                repo.session.close()

        try:
            raw, media_type = await asyncio.to_thread(fetch)
        except UpstreamError as e:
            if e.http_status == 404:
                raise manifest_unknown(reference) from None
            log.warning("upstream %s: manifest %s:%s: %s; serving the cached copy", self.endpoint.host, name,
                        reference, e.message)
            return
        digest = reg.blobs.put(raw)
        reg.repos.link_manifest(name, digest, media_type)
        if not is_digest_reference(reference):
            reg.repos.set_tag(name, reference, digest)

    # --- blobs --------------------------------------------------------------------------------
    async def ensure_blob(self, name: str, digest: str) -> None:
        """Make the blob local (fetched and verified once, even for concurrent requests)."""
        reg = self.registry
        algo, _ = check_digest(digest)
        if reg.repos.has_blob(name, digest) and reg.blobs.size(digest) is not None:
            return
        lock = self._fetching.setdefault(digest, asyncio.Lock())
        async with lock:
            if reg.blobs.size(digest) is None:
                if algo != "sha256":  # the client verifies sha256 only
                    raise blob_unknown(digest)
                await asyncio.to_thread(self._fetch_blob, name, digest)
            reg.repos.link_blob(name, digest)
        self._fetching.pop(digest, None)

    def _fetch_blob(self, name: str, digest: str) -> None:
        tmp = os.path.join(self.registry.uploads.root, f".proxy-{os.urandom(8).hex()}")
        repo = self._repo(name)
        try:
            reader = repo.open_blob(digest)
            with open(tmp, "wb") as f:
                while chunk := reader.read(1 << 20):  # raises at the end if the bytes are wrong
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            self.registry.blobs.adopt(tmp, digest)
        except UpstreamError as e:
            # unreachable upstream included: to a client the blob is simply not here
            log.warning("upstream %s: blob %s of %s: %s", self.endpoint.host, digest, name, e.message)
            raise blob_unknown(digest) from None
        finally:
            repo.session.close()
            if os.path.exists(tmp):
                os.unlink(tmp)
