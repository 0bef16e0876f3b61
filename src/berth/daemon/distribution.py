"""What pull and push share: registry settings, the DiffID -> compressed blob memory, and the
bridge that runs a blocking transfer in a thread while its progress messages stream to the API.

The memory (`blob_sources`) is what keeps a re-push cheap and its digests stable: every layer
pulled from or pushed to a repository is recorded as (DiffID, compressed digest, registry, repo),
so the next push HEADs or mounts that digest instead of compressing again.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from berth.common.db import Database
from berth.registry.client import Credentials, Endpoint, Repository, resolve
from berth.registry.client.endpoint import DOCKER_HUB
from berth.registry.client.session import Session
from berth.registry.client.tls import DEFAULT_CERTS_DIR

from .streams import from_thread

SCHEMA = """
CREATE TABLE IF NOT EXISTS blob_sources (
    diff_id TEXT NOT NULL,
    digest TEXT NOT NULL,          -- the compressed blob's digest on the registry
    size INTEGER NOT NULL,
    media_type TEXT NOT NULL,
    registry TEXT NOT NULL,        -- '' for a blob berth compressed itself
    repo TEXT NOT NULL,
    PRIMARY KEY (diff_id, digest, registry, repo)
);
CREATE INDEX IF NOT EXISTS blob_sources_diff ON blob_sources(diff_id);
"""

Emit = Callable[[dict[str, Any]], None]


@dataclass
class RegistrySettings:
    insecure: list[str] = field(default_factory=list)
    certs_dir: str | None = DEFAULT_CERTS_DIR  # docker's /etc/docker/certs.d/<host>/ CAs and client certs
    mirrors: list[str] = field(default_factory=list)  # docker.io mirrors (`--registry-mirror` URLs)
    # insecure registry host -> "https" or "http", as probed once: a re-push pays no probe
    schemes: dict[str, str] = field(default_factory=dict)

    def mirror_endpoints(self, domain: str) -> list[Endpoint]:
        """Where to try a docker.io pull first, in order; an `http://` mirror is spoken to in plain HTTP."""
        if domain != DOCKER_HUB:
            return []
        out = []
        for url in self.mirrors:
            parts = urllib.parse.urlsplit(url if "://" in url else f"https://{url}")
            if parts.netloc:
                out.append(Endpoint(parts.netloc, parts.netloc, parts.scheme == "https"))
        return out

    def mirror_repository(self, endpoint: Endpoint, path: str, creds: Credentials) -> Repository:
        return Repository(self.session(endpoint, creds, (f"repository:{path}:pull",)), path)

    def endpoint(self, domain: str) -> Endpoint:
        return resolve(domain, self.insecure)

    def session(self, endpoint: Endpoint, creds: Credentials, scopes: tuple[str, ...] = ()) -> Session:
        return Session(endpoint, creds, scopes, self.certs_dir, self.schemes)

    def repository(self, domain: str, path: str, creds: Credentials, actions: str = "pull",
                   extra_scopes: tuple[str, ...] = ()) -> Repository:
        scopes = (f"repository:{path}:{actions}", *extra_scopes)
        return Repository(self.session(self.endpoint(domain), creds, scopes), path)


@dataclass
class BlobSource:
    digest: str
    size: int
    media_type: str
    registry: str
    repo: str


class BlobSources:
    def __init__(self, db: Database) -> None:
        self.db = db
        db.ensure_schema(SCHEMA)

    def record(self, diff_id: str, src: BlobSource) -> None:
        with self.db.tx() as c:
            c.execute("INSERT OR REPLACE INTO blob_sources(diff_id, digest, size, media_type, registry, repo) "
                      "VALUES (?,?,?,?,?,?)", (diff_id, src.digest, src.size, src.media_type, src.registry,
                                               src.repo))

    def forget(self, diff_id: str, digest: str, registry: str, repo: str) -> None:
        with self.db.tx() as c:
            c.execute("DELETE FROM blob_sources WHERE diff_id=? AND digest=? AND registry=? AND repo=?",
                      (diff_id, digest, registry, repo))

    def of(self, diff_id: str) -> list[BlobSource]:
        rows = self.db.query("SELECT * FROM blob_sources WHERE diff_id=? ORDER BY rowid DESC", (diff_id,))
        return [BlobSource(r["digest"], r["size"], r["media_type"], r["registry"], r["repo"]) for r in rows]


def run_with_progress(work: Callable[[Emit], None]) -> AsyncIterator[dict[str, Any]]:
    """Run `work(emit)` in a thread; yield the progress messages it emits."""
    return from_thread(work)


def human_size(n: float) -> str:
    """docker's units.HumanSize: decimal units, 3 significant digits (`2.15MB`)."""
    units = ["B", "kB", "MB", "GB", "TB", "PB"]
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n /= 1000.0
        i += 1
    return f"{n:.4g}{units[i]}" if i else f"{int(n)}B"


def progress_bar(current: int, total: int) -> str:
    """The text docker's JSONProgress renders: `[=====>      ]  1.2MB/3.4MB`."""
    if total <= 0:
        return f"{human_size(current):>8}"
    width = 50
    filled = min(width, int(width * current / total))
    bar = "=" * filled + (">" if filled < width else ">")
    bar = bar[:width] if filled < width else "=" * (width - 1) + ">"
    return f"[{bar:<{width}}] {human_size(current):>8}/{human_size(total)}"


class Throttle:
    """At most one progress message per `interval` seconds per layer (plus the last)."""

    def __init__(self, interval: float = 0.1) -> None:
        import time

        self._time = time.monotonic
        self.interval = interval
        self.last = 0.0

    def ready(self) -> bool:
        now = self._time()
        if now - self.last >= self.interval:
            self.last = now
            return True
        return False


def short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]
