"""ADD <url>: download a source into the build's work directory, as dockerd's legacy builder does.

The file gets its name from Content-Disposition or the URL's last path segment, mode 0600 and
the server's Last-Modified time as mtime (epoch when there is none), so its COPY identity is its
content and that time. It is downloaded on every build: the cache key is what came back, never the
URL, so a changed file at the same URL busts the cache. `--checksum=sha256:<hex>` (BuildKit's)
is verified before anything is written to a layer. Blocking: run in a worker thread.
"""

from __future__ import annotations

import email.message
import email.utils
import hashlib
import os
import posixpath
import urllib.error
import urllib.parse
import urllib.request

from .buildview import CopyError

TIMEOUT = 60


def is_url(src: str) -> bool:
    return src.startswith(("http://", "https://"))


def fetch(url: str, dest_dir: str, checksum: str = "") -> str:
    """Download `url` into `dest_dir` (made here); returns the file's name there."""
    algo, _, want = checksum.partition(":")
    if checksum and (algo not in ("sha256", "sha384", "sha512") or not want):
        raise CopyError(f"ADD failed: invalid checksum digest format: {checksum}")
    os.makedirs(dest_dir, exist_ok=True)
    req = urllib.request.Request(url, headers={"User-Agent": "berth-builder"})
    try:
        resp = urllib.request.urlopen(req, timeout=TIMEOUT)  # noqa: S310 (http/https only: is_url)
    except urllib.error.HTTPError as e:
        raise CopyError(f"ADD failed: error downloading {url}: {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise CopyError(f"ADD failed: error downloading {url}: {reason}") from None
    with resp:
        name = _filename(url, resp.headers.get("Content-Disposition", ""))
        path = os.path.join(dest_dir, name)
        h = hashlib.new(algo or "sha256")
        with open(path, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            while chunk := resp.read(1 << 20):
                h.update(chunk)
                f.write(chunk)
        mtime = _last_modified(resp.headers.get("Last-Modified", ""))
    if want and h.hexdigest() != want.lower():
        raise CopyError(f"ADD failed: digest mismatch for {url}: {algo}:{h.hexdigest()}, expected {checksum}")
    os.utime(path, (mtime, mtime))
    return name


def _filename(url: str, disposition: str) -> str:
    if disposition:
        msg = email.message.Message()
        msg["Content-Disposition"] = disposition
        name = posixpath.basename(msg.get_filename() or "")
        if name not in ("", ".", ".."):
            return name
    name = posixpath.basename(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
    if name in ("", ".", ".."):
        raise CopyError(f"ADD failed: cannot determine filename from url: {url}")
    return name


def _last_modified(value: str) -> int:
    if not value:
        return 0
    try:
        return int(email.utils.parsedate_to_datetime(value).timestamp())
    except (TypeError, ValueError):
        return 0
