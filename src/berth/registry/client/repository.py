"""One repository on a registry: manifests, indexes, blobs and uploads (the distribution API).

Pull: `get_manifest` (by tag or digest, the body's digest checked when asked by digest),
`select_platform` on an index, `fetch_blob` streaming into a sink whose digest the caller checks
before committing anything. Push: `blob_exists` (HEAD), `mount_blob`, `upload_blob`
(monolithic PUT), `put_manifest`.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from .errors import RegistryError
from .session import Session

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
INDEX_TYPES = (DOCKER_LIST, OCI_INDEX)
MANIFEST_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)
ACCEPT = ", ".join((DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX))
CHUNK = 1 << 20
UPLOAD_RETRIES = 4  # a registry restarting gets 0.25 + 0.5 + 1 + 2 s to come back


@dataclass
class Manifest:
    raw: bytes
    media_type: str
    digest: str

    @property
    def json(self) -> dict[str, Any]:
        data = json.loads(self.raw)
        if not isinstance(data, dict):
            raise RegistryError("manifest is not a JSON object", 502)
        return data

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Repository:
    def __init__(self, session: Session, path: str) -> None:
        self.session = session
        self.path = path  # repository path on the registry: library/busybox, t/busybox

    @property
    def display(self) -> str:
        return f"{self.session.endpoint.name}/{self.path}"

    # --- manifests --------------------------------------------------------------------------
    def get_manifest(self, ref: str) -> Manifest:
        """By tag or digest; a missing one raises RegistryError (404, MANIFEST_UNKNOWN)."""
        ctx = f"manifest for {self.display}{'@' if ref.startswith('sha256:') else ':'}{ref} not found"
        try:
            resp = self.session.request("GET", f"/v2/{self.path}/manifests/{ref}", {"Accept": ACCEPT})
        except RegistryError as e:
            if e.http_status == 404 and e.code in ("MANIFEST_UNKNOWN", "NOT_FOUND", ""):
                raise RegistryError(f"{ctx}: {e.message}", 404, e.code) from None
            raise
        raw = resp.read()
        digest = _sha256(raw)
        if ref.startswith("sha256:") and digest != ref:
            raise RegistryError(f"manifest digest mismatch for {self.display}@{ref}: got {digest}", 502)
        media_type = (resp.getheader("Content-Type") or "").split(";")[0].strip()
        try:
            body_type = json.loads(raw).get("mediaType")
        except (ValueError, AttributeError):
            raise RegistryError(f"invalid manifest for {self.display}:{ref}", 502) from None
        if body_type:
            media_type = body_type
        elif media_type not in INDEX_TYPES + MANIFEST_TYPES:
            media_type = OCI_INDEX if b'"manifests"' in raw else OCI_MANIFEST
        if media_type not in INDEX_TYPES + MANIFEST_TYPES:
            raise RegistryError(f"unsupported manifest media type {media_type} for {self.display}:{ref}", 400)
        return Manifest(raw, media_type, digest)

    def list_tags(self) -> list[str]:
        """Every tag of the repository, following `Link: <...>; rel="next"` pages."""
        tags: list[str] = []
        url = f"/v2/{self.path}/tags/list?n=1000"
        for _ in range(1000):
            resp = self.session.request("GET", url, context=f"tags of {self.display}")
            body = resp.read()
            try:
                tags += [str(t) for t in (json.loads(body).get("tags") or [])]
            except (ValueError, AttributeError):
                raise RegistryError(f"invalid tag list from {self.display}", 502) from None
            link = resp.getheader("Link") or ""
            if 'rel="next"' not in link or "<" not in link:
                break
            url = link[link.index("<") + 1:link.index(">")]
        return tags

    def put_manifest(self, ref: str, raw: bytes, media_type: str) -> str:
        resp = self.session.request("PUT", f"/v2/{self.path}/manifests/{ref}", {"Content-Type": media_type},
                                    raw, ok=(200, 201, 202))
        resp.read()
        return resp.getheader("Docker-Content-Digest") or _sha256(raw)

    # --- blobs ------------------------------------------------------------------------------
    def blob_exists(self, digest: str) -> int | None:
        """The blob's size if the repository has it, else None (HEAD)."""
        resp = self.session.request("HEAD", f"/v2/{self.path}/blobs/{digest}", ok=(200, 404))
        resp.read()
        if resp.status != 200:
            return None
        return int(resp.getheader("Content-Length") or 0)

    def fetch_blob(self, digest: str, sink: Callable[[bytes], object],
                   progress: Callable[[int], None] | None = None, verify: bool = True) -> None:
        """Stream the blob into `sink`; raises if its bytes do not hash to `digest`, so the caller
        commits only after this returns (`verify=False` when the sink checks the digest itself,
        as a content-store writer does). Follows redirects to blob storage."""
        url = f"/v2/{self.path}/blobs/{digest}"
        for _ in range(5):
            resp = self.session.request("GET", url, ok=(200, 301, 302, 303, 307, 308),
                                        context=f"blob {digest} of {self.display}")
            if resp.status == 200:
                break
            resp.read()
            location = resp.getheader("Location") or ""
            url = urllib.parse.urljoin(self.session.url(url) if "://" not in url else url, location)
        else:
            raise RegistryError(f"too many redirects fetching {digest}", 502)
        h = hashlib.sha256() if verify else None
        done = 0
        while chunk := resp.read(CHUNK):
            if h is not None:
                h.update(chunk)
            sink(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done)
        got = "sha256:" + h.hexdigest() if h is not None else digest
        if got != digest:
            raise RegistryError(f"filesystem layer verification failed for digest {digest} (got {got})", 502)

    def open_blob(self, digest: str, size: int = -1, progress: Callable[[int], None] | None = None,
                  ) -> BlobReader:
        """A file-like reader of the blob that hashes what it reads, resumes with a Range request
        when the connection drops mid-body, and raises at EOF if the bytes do not match `digest`."""
        return BlobReader(self, digest, size, progress)

    def _get_blob(self, digest: str, offset: int) -> http.client.HTTPResponse:
        url = f"/v2/{self.path}/blobs/{digest}"
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        for _ in range(5):
            resp = self.session.request("GET", url, headers, ok=(200, 206, 301, 302, 303, 307, 308),
                                        context=f"blob {digest} of {self.display}")
            if resp.status in (200, 206):
                if offset and resp.status != 206:
                    resp.close()
                    raise RegistryError(f"registry cannot resume blob {digest} (no Range support)", 502)
                return resp
            resp.read()
            location = resp.getheader("Location") or ""
            url = urllib.parse.urljoin(self.session.url(url) if "://" not in url else url, location)
        raise RegistryError(f"too many redirects fetching {digest}", 502)

    def mount_blob(self, digest: str, from_repo: str) -> str | None:
        """Cross-repository mount; returns the upload location when the registry declined (202)."""
        q = urllib.parse.urlencode({"mount": digest, "from": from_repo})
        resp = self.session.request("POST", f"/v2/{self.path}/blobs/uploads/?{q}", {"Content-Length": "0"},
                                    b"", ok=(201, 202))
        resp.read()
        return None if resp.status == 201 else self._location(resp.getheader("Location"))

    def start_upload(self) -> str:
        resp = self.session.request("POST", f"/v2/{self.path}/blobs/uploads/", {"Content-Length": "0"}, b"",
                                    ok=(202,))
        resp.read()
        return self._location(resp.getheader("Location"))

    def upload_blob(self, digest: str, size: int, data: IO[bytes] | bytes, location: str | None = None) -> None:
        """Monolithic upload: one PUT of the whole blob to an upload session. If the connection
        breaks (a registry restarting), the session's offset is asked for and the rest is sent
        as a chunk (PATCH with Content-Range, then PUT): what arrived is not sent again."""
        location = location or self.start_upload()
        try:
            self._finish(location, digest, data, size)
            return
        except (OSError, http.client.HTTPException, RegistryError) as e:
            if isinstance(data, bytes) or (isinstance(e, RegistryError) and e.http_status < 500):
                raise
            error: BaseException = e
        for attempt in range(UPLOAD_RETRIES):
            time.sleep(0.25 * 2 ** attempt)
            try:
                offset, location = self._upload_offset(location)
                if offset < size:
                    data.seek(offset)
                    resp = self.session.request("PATCH", location, {
                        "Content-Type": "application/octet-stream", "Content-Length": str(size - offset),
                        "Content-Range": f"{offset}-{size - 1}"}, data, ok=(202,))
                    resp.read()
                    location = self._location(resp.getheader("Location") or location)
                self._finish(location, digest, b"", 0)
                return
            except (OSError, http.client.HTTPException, RegistryError) as e:
                if isinstance(e, RegistryError) and e.http_status < 500 and e.http_status != 416:
                    raise
                error = e
        raise RegistryError(f"uploading {digest}: {error}", 502)

    def _finish(self, location: str, digest: str, body: IO[bytes] | bytes, size: int) -> None:
        sep = "&" if "?" in location else "?"
        url = f"{location}{sep}{urllib.parse.urlencode({'digest': digest})}"
        resp = self.session.request("PUT", url, {"Content-Type": "application/octet-stream",
                                                 "Content-Length": str(size)}, body, ok=(201, 204))
        resp.read()

    def _upload_offset(self, location: str) -> tuple[int, str]:
        """How many bytes the upload session holds (its `Range: 0-N`), and its current location."""
        resp = self.session.request("GET", location, ok=(204,))
        resp.read()
        rng = (resp.getheader("Range") or "").removeprefix("bytes=")
        end = rng.partition("-")[2]
        offset = int(end) + 1 if end.isdigit() else 0
        if rng == "0-0":  # distribution reports an empty session as 0-0 too: ask no more of it
            offset = 0
        return offset, self._location(resp.getheader("Location") or location)

    def _location(self, loc: str | None) -> str:
        if not loc:
            raise RegistryError("registry answered an upload without a Location", 502)
        return urllib.parse.urljoin(self.session.url(f"/v2/{self.path}/blobs/uploads/"), loc)


def parse_platform(spec: str, default_os: str, default_arch: str) -> tuple[str, str, str]:
    """`linux/arm64/v8`, `linux/amd64`, `arm64` -> (os, arch, variant)."""
    parts = [p for p in spec.lower().split("/") if p] if spec else []
    if len(parts) == 1 and parts[0] not in ("linux", "windows", "darwin", "freebsd"):
        parts = [default_os, parts[0]]
    os_ = parts[0] if parts else default_os
    arch = parts[1] if len(parts) > 1 else default_arch
    variant = parts[2] if len(parts) > 2 else ""
    if arch in ("x86_64", "x86-64"):
        arch = "amd64"
    elif arch == "aarch64":
        arch = "arm64"
    return os_, arch, variant


def select_platform(index: dict[str, Any], os_: str, arch: str, variant: str = "") -> dict[str, Any] | None:
    """The index entry for the platform: os and arch must match; a requested variant must match,
    otherwise arm64 prefers v8 or none, as containerd's matcher ranks them."""
    best: tuple[int, dict[str, Any]] | None = None
    for entry in index.get("manifests") or []:
        p = entry.get("platform") or {}
        if p.get("os") != os_ or p.get("architecture") != arch:
            continue
        if entry.get("mediaType") not in (None, *MANIFEST_TYPES):
            continue
        v = p.get("variant") or ""
        if variant:
            if v != variant:
                continue
            score = 2
        else:
            score = 2 if v in ("", "v8" if arch == "arm64" else "") else 1
        if best is None or score > best[0]:
            best = (score, entry)
    return best[1] if best else None


class BlobReader:
    """`read()` the bytes of one blob; see `Repository.open_blob`."""

    RETRIES = 4

    def __init__(self, repo: Repository, digest: str, size: int, progress: Callable[[int], None] | None) -> None:
        self._repo = repo
        self.digest = digest
        self.size = size
        self._progress = progress
        self._hash = hashlib.sha256()
        self.done = 0
        self.resumed = 0
        self._resp: http.client.HTTPResponse | None = repo._get_blob(digest, 0)
        self._verified = False

    def read(self, n: int = -1) -> bytes:
        if self._verified:
            return b""
        for attempt in range(self.RETRIES + 1):
            try:
                if self._resp is None:
                    self._resp = self._repo._get_blob(self.digest, self.done)
                    self.resumed += 1
                data = self._resp.read(n if n and n > 0 else CHUNK)
                # http.client reports a connection cut before Content-Length as a plain EOF
                if not data and self._resp.length:
                    raise http.client.IncompleteRead(b"", self._resp.length)
                break
            except (OSError, http.client.HTTPException, RegistryError) as e:
                if self._resp is not None:
                    self._resp.close()
                self._resp = None
                if attempt == self.RETRIES or (isinstance(e, RegistryError) and e.http_status < 500):
                    raise RegistryError(f"downloading {self.digest}: {e}", 502) from None
                time.sleep(0.25 * 2 ** attempt)  # the registry may be restarting
        if data:
            self._hash.update(data)
            self.done += len(data)
            if self._progress is not None:
                self._progress(self.done)
            return data
        self.close()
        got = "sha256:" + self._hash.hexdigest()
        if 0 <= self.size != self.done:
            raise RegistryError(f"filesystem layer verification failed for digest {self.digest} "
                                f"({self.done} bytes, the manifest says {self.size})", 502)
        if got != self.digest:
            raise RegistryError(f"filesystem layer verification failed for digest {self.digest} (got {got})", 502)
        self._verified = True
        return b""

    def drain(self) -> None:
        """Read to the end (and so verify): the decompressor may stop short of trailing bytes."""
        while self.read(CHUNK):
            pass

    def close(self) -> None:
        if self._resp is not None:
            self._resp.close()
            self._resp = None
