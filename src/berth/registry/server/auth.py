"""Who is asking, and may they: htpasswd users, then Basic or Bearer (token) authorization.

Passwords: an htpasswd file of bcrypt (`$2y$`, `$2b$`, `$2a$`) entries. Clients send the password
on every request and bcrypt costs ~100 ms by design, so a verified (user, password) pair is
remembered by its sha256 for the life of the process; checks run in a thread so one login never
stalls other transfers. The file is re-read when its mtime changes.

Authorization, per request, from what it needs (`need_of`): `BasicAuthorizer` checks the
password and the policy; `TokenAuthorizer` checks a Bearer JWT from `/token` (see
`routes_token.py`). Both answer a missing or wrong login with 401 and a challenge, and a login
the policy refuses with 403 DENIED.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import os
from dataclasses import dataclass

import bcrypt

from berth.api.http.server import Request

from .errors import RegistryError, denied, unauthorized
from .policy import OpenPolicy, Policy, Scope, grant
from .tokens import Signer, TokenInvalid

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



@dataclass(frozen=True)
class Need:
    """What a request needs: an action on a repository or `registry:catalog`, or (kind '') a login."""

    kind: str
    name: str
    action: str

    def challenge_scope(self) -> str:
        actions = "pull,push" if self.action == "push" else self.action
        return str(Scope(self.kind, self.name, tuple(actions.split(","))))


_ACTION = {"GET": "pull", "HEAD": "pull", "POST": "push", "PATCH": "push", "PUT": "push", "DELETE": "delete"}


def need_of(req: Request) -> Need | None:
    """None for requests outside the distribution API (the token endpoint authenticates itself)."""
    if not req.path.startswith("/v2/"):
        return None
    if req.path == "/v2/_catalog":
        return Need("registry", "catalog", "*")
    name = req.params.get("name")
    if name is None:
        return Need("", "", "")
    return Need("repository", name, _ACTION.get(req.method, "push"))


def _has(actions: set[str], action: str) -> bool:
    return action in actions or "*" in actions


class BasicAuthorizer:
    def __init__(self, users: HtpasswdAuth, policy: Policy | None = None) -> None:
        self.users = users
        self.policy = policy or OpenPolicy()

    async def account(self, req: Request) -> str:
        """The logged-in user, '' when no credentials came; a wrong password is 401 at once."""
        creds = parse_basic(req.headers.get("authorization"))
        if creds is None or creds == ("", ""):  # containers/image sends empty Basic when it has no login
            return ""
        if not await self.users.check(*creds):
            raise unauthorized(self.users.realm)
        return creds[0]

    async def authorize(self, req: Request, need: Need) -> str:
        user = await self.account(req)
        if need.kind == "":
            if not user:
                raise unauthorized(self.users.realm)
            return user
        if _has(self.policy.allowed(user, need.kind, need.name), need.action):
            return user
        if not user:
            raise unauthorized(self.users.realm)
        raise denied()

    async def permits(self, req: Request, kind: str, name: str, action: str) -> bool:
        user = req.params.get("_account", "")
        return _has(self.policy.allowed(user, kind, name), action)


class TokenAuthorizer:
    """Bearer tokens; the challenge sends clients to `realm` (ours at `/token` unless configured)."""

    def __init__(self, signer: Signer, users: HtpasswdAuth | None, policy: Policy | None = None,
                 realm: str = "", tls: bool = False) -> None:
        self.signer = signer
        self.users = users
        self.policy = policy or OpenPolicy()
        self.realm = realm
        self.tls = tls

    def realm_for(self, req: Request) -> str:
        if self.realm:
            return self.realm
        return f"{'https' if self.tls else 'http'}://{req.headers.get('host', 'localhost')}/token"

    def _challenge(self, req: Request, need: Need, error: str = "", message: str = "authentication required",
                   ) -> RegistryError:
        params = [f'realm="{self.realm_for(req)}"', f'service="{self.signer.service}"']
        if need.kind:
            params.append(f'scope="{need.challenge_scope()}"')
        if error:
            params.append(f'error="{error}"')
        return unauthorized(challenge="Bearer " + ",".join(params), message=message)

    async def authorize(self, req: Request, need: Need) -> str:
        header = req.headers.get("authorization") or ""
        if header[:7].lower() != "bearer ":
            raise self._challenge(req, need)
        try:
            token = self.signer.verify(header[7:].strip())
        except TokenInvalid as e:
            raise self._challenge(req, need, "invalid_token", str(e)) from None
        req.params["_token"] = header[7:].strip()
        if need.kind == "" or _has(token.actions(need.kind, need.name), need.action):
            return token.subject
        if _has(self.policy.allowed(token.subject, need.kind, need.name), need.action):
            # the policy would allow it: the client just asked for too little; let it ask again
            raise self._challenge(req, need, "insufficient_scope", "insufficient scope")
        if not token.subject:
            raise self._challenge(req, need)
        raise denied()

    async def permits(self, req: Request, kind: str, name: str, action: str) -> bool:
        try:
            token = self.signer.verify(req.params.get("_token", ""))
        except TokenInvalid:
            return False
        return _has(token.actions(kind, name), action)

    async def issue(self, req: Request, user: str, scopes: list[Scope]) -> tuple[str, int]:
        granted = [g for s in scopes if (g := grant(self.policy, user, s)) is not None]
        return self.signer.issue(user, granted)
