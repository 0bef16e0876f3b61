"""Blob upload sessions at `<root>/_uploads/<uuid>/` (`data` and `info.json`).

The offset of a session is the size of its `data` file, so a restarted registry resumes where
the client left off. The running hash lives in memory only (hash state cannot be saved); when it
is missing (after a restart, or when the client finishes with another algorithm) the file is
hashed again at commit. A session becomes a blob only if its digest verifies.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import uuid as uuidlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from .errors import blob_upload_unknown, digest_invalid
from .fsutil import read_text, write_atomic
from .names import ALGORITHMS, check_digest

_UUID_CHARS = set("0123456789abcdef-")


@dataclass
class _Session:
    repo: str
    algo: str
    size: int
    hasher: Any = None  # hashlib object in step with `data`, or None when it must be recomputed
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class UploadStore:
    def __init__(self, root: str) -> None:
        self.root = os.path.join(root, "_uploads")
        os.makedirs(self.root, exist_ok=True)
        self._live: dict[str, _Session] = {}

    def _dir(self, uuid: str) -> str:
        if not uuid or not set(uuid) <= _UUID_CHARS:
            raise blob_upload_unknown(uuid)
        return os.path.join(self.root, uuid)

    def data_path(self, uuid: str) -> str:
        return os.path.join(self._dir(uuid), "data")

    def create(self, repo: str, algo: str = "sha256") -> str:
        if algo not in ALGORITHMS:
            raise digest_invalid(f"unsupported digest algorithm: {algo}")
        uuid = str(uuidlib.uuid4())
        directory = self._dir(uuid)
        os.makedirs(directory)
        open(os.path.join(directory, "data"), "wb").close()
        write_atomic(os.path.join(directory, "info.json"), json.dumps({"repo": repo, "algo": algo}).encode(),
                     sync=False)
        self._live[uuid] = _Session(repo, algo, 0, hashlib.new(algo))
        return uuid

    def session(self, repo: str, uuid: str) -> _Session:
        """The session `uuid` of repository `repo`; reloaded from disk after a restart."""
        s = self._live.get(uuid)
        if s is None:
            raw = read_text(os.path.join(self._dir(uuid), "info.json"))
            if raw is None:
                raise blob_upload_unknown(uuid)
            info = json.loads(raw)
            try:
                size = os.stat(self.data_path(uuid)).st_size
            except FileNotFoundError:
                raise blob_upload_unknown(uuid) from None
            s = self._live[uuid] = _Session(info["repo"], info["algo"], size)
        if s.repo != repo:
            raise blob_upload_unknown(uuid)
        return s

    async def append(self, s: _Session, uuid: str, body: AsyncIterator[bytes]) -> int:
        """Append a request body; returns the new size. Call with `s.lock` held."""
        with open(self.data_path(uuid), "ab") as f:
            try:
                async for chunk in body:
                    f.write(chunk)
                    s.size += len(chunk)
                    if s.hasher is not None:
                        s.hasher.update(chunk)
            except BaseException:
                # The file keeps what arrived; the size is what is on disk, the hash is redone later.
                f.flush()
                s.size = f.tell()
                s.hasher = None
                raise
        return s.size

    async def commit(self, s: _Session, uuid: str, digest: str) -> str:
        """Verify the session's bytes against `digest`; returns the data file, synced, to adopt.
        On a mismatch the session is dropped, so no partial or wrong blob can ever be committed."""
        algo, hexpart = check_digest(digest)
        path = self.data_path(uuid)
        if s.hasher is not None and s.algo == algo:
            actual = s.hasher.hexdigest()
            await asyncio.to_thread(_fsync_path, path)
        else:
            actual = await asyncio.to_thread(_hash_and_sync, path, algo)
        if actual != hexpart:
            self.cancel(uuid)
            raise digest_invalid("provided digest did not match uploaded content", digest)
        return path

    def finish(self, uuid: str) -> None:
        self.cancel(uuid)

    def cancel(self, uuid: str) -> None:
        self._live.pop(uuid, None)
        shutil.rmtree(self._dir(uuid), ignore_errors=True)

    def uuids(self) -> list[str]:
        return os.listdir(self.root)


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _hash_and_sync(path: str, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
        os.fsync(f.fileno())
    return h.hexdigest()
