"""Bearer tokens in Docker's token-auth shape: JWTs signed HS256 with stdlib `hmac`.

Claims are the ones distribution's token spec names (`iss`, `sub`, `aud` = the service, `exp`,
`nbf`, `iat`, `jti`, and `access`: [{type, name, actions}]). Only HS256 is accepted on the way
back in, compared in constant time, so an `alg: none` or a re-signed token is refused. The key
is one shared secret: the registry that issues tokens is the one that checks them (or several
given the same `--token-key` file). Pure logic, no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from dataclasses import dataclass
from typing import Any

from .policy import Scope

LEEWAY = 30  # seconds of clock skew tolerated on nbf/exp


class TokenInvalid(ValueError):
    pass


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Token:
    subject: str  # '' for an anonymous token
    access: tuple[Scope, ...]
    expires: int

    def actions(self, kind: str, name: str) -> set[str]:
        got: set[str] = set()
        for s in self.access:
            if s.type == kind and s.name == name:
                got |= set(s.actions)
        return got


class Signer:
    def __init__(self, key: bytes, issuer: str, service: str, ttl: int = 300) -> None:
        if len(key) < 32:
            raise ValueError("token key must be at least 32 bytes")
        self.key = key
        self.issuer = issuer
        self.service = service
        self.ttl = ttl

    def issue(self, subject: str, access: list[Scope], now: float | None = None) -> tuple[str, int]:
        """(compact JWT, its lifetime in seconds)."""
        t = int(time.time() if now is None else now)
        claims: dict[str, Any] = {
            "iss": self.issuer, "sub": subject, "aud": self.service, "exp": t + self.ttl, "nbf": t - 1,
            "iat": t, "jti": os.urandom(12).hex(),
            "access": [{"type": s.type, "name": s.name, "actions": list(s.actions)} for s in access],
        }
        head = _b64(json.dumps({"typ": "JWT", "alg": "HS256"}, separators=(",", ":")).encode())
        body = _b64(json.dumps(claims, separators=(",", ":")).encode())
        sig = hmac.new(self.key, f"{head}.{body}".encode(), hashlib.sha256).digest()
        return f"{head}.{body}.{_b64(sig)}", self.ttl

    def verify(self, token: str, now: float | None = None) -> Token:
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenInvalid("malformed token")
        try:
            header = json.loads(_unb64(parts[0]))
            claims = json.loads(_unb64(parts[1]))
            sig = _unb64(parts[2])
        except (ValueError, UnicodeDecodeError):
            raise TokenInvalid("malformed token") from None
        if not isinstance(header, dict) or header.get("alg") != "HS256":
            raise TokenInvalid("unsupported token algorithm")
        want = hmac.new(self.key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(sig, want):
            raise TokenInvalid("bad token signature")
        if not isinstance(claims, dict):
            raise TokenInvalid("malformed token claims")
        t = time.time() if now is None else now
        aud = claims.get("aud")
        if claims.get("iss") != self.issuer or (aud != self.service and not (
                isinstance(aud, list) and self.service in aud)):
            raise TokenInvalid("token is for another issuer or service")
        exp, nbf = claims.get("exp"), claims.get("nbf", 0)
        if not isinstance(exp, int) or not isinstance(nbf, int) or t > exp + LEEWAY or t < nbf - LEEWAY:
            raise TokenInvalid("token expired or not yet valid")
        access = []
        for a in claims.get("access") or []:
            if isinstance(a, dict) and isinstance(a.get("actions"), list):
                access.append(Scope(str(a.get("type", "")), str(a.get("name", "")),
                                    tuple(str(x) for x in a["actions"])))
        return Token(str(claims.get("sub") or ""), tuple(access), exp)
