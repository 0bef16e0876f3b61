"""HTTP basic auth against an htpasswd file of bcrypt (`$2y$`, `$2b$`, `$2a$`) entries.

Clients send the password on every request and bcrypt costs ~100 ms by design, so a verified
(user, password) pair is remembered by its sha256 for the life of the process; checks run in a
thread so one login never stalls other transfers. The file is re-read when its mtime changes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import os

import bcrypt

from berth.api.http.server import Request

from .errors import unauthorized

REALM = "berth-registry"


def parse_htpasswd(text: str) -> dict[str, bytes]:
    users: dict[str, bytes] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or ":" not in line:
            continue
        user, _, hashed = line.partition(":")
        if hashed.startswith(("$2y$", "$2b$", "$2a$")):  # only bcrypt, as distribution accepts
            users[user] = hashed.encode()
    return users


def parse_basic(header: str | None) -> tuple[str, str] | None:
    if not header or not header[:6].lower() == "basic ":
        return None
    try:
        raw = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = raw.partition(":")
    return (user, password) if sep else None


class HtpasswdAuth:
    def __init__(self, path: str, realm: str = REALM) -> None:
        self.path = path
        self.realm = realm
        self._users: dict[str, bytes] = {}
        self._mtime = -1.0
        self._verified: set[bytes] = set()
        self._load()

    def _load(self) -> None:
        mtime = os.stat(self.path).st_mtime
        if mtime != self._mtime:
            with open(self.path, encoding="utf-8") as f:
                self._users = parse_htpasswd(f.read())
            self._mtime = mtime
            self._verified.clear()  # a changed file may have revoked or changed a password

    async def check(self, user: str, password: str) -> bool:
        self._load()
        hashed = self._users.get(user)
        if hashed is None:
            return False
        key = hashlib.sha256(b"\0".join([user.encode(), password.encode(), hashed])).digest()
        if key in self._verified:
            return True
        ok = await asyncio.to_thread(bcrypt.checkpw, password.encode(), hashed)
        if ok:
            self._verified.add(key)
        return ok

    async def __call__(self, req: Request) -> None:
        creds = parse_basic(req.headers.get("authorization"))
        if creds is None or not await self.check(*creds):
            raise unauthorized(self.realm)
