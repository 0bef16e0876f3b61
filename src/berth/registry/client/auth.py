"""Credentials and the registry auth challenge (`WWW-Authenticate: Basic` or `Bearer`).

A Bearer challenge names a token service (`realm`, `service`, `scope`); the token is fetched with
the basic credentials (or anonymously) and cached per scope set for its lifetime.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass

from berth.common.errors import InvalidParameter


@dataclass(frozen=True)
class Credentials:
    username: str = ""
    password: str = ""
    identity_token: str = ""  # an OAuth refresh token (docker's `identitytoken`)
    registry_token: str = ""  # a bearer token to send as is (`registrytoken`)

    @property
    def anonymous(self) -> bool:
        return not (self.username or self.identity_token or self.registry_token)

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


def decode_registry_auth(header: str | None) -> Credentials:
    """The `X-Registry-Auth` header: base64url JSON {username, password, serveraddress, ...}."""
    if not header:
        return Credentials()
    text = header.strip()
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError):
        # dockerd ignores an undecodable header rather than failing the pull
        return Credentials()
    if not isinstance(data, dict):
        return Credentials()
    return credentials_from_json(data)


def credentials_from_json(data: dict[str, object]) -> Credentials:
    user = str(data.get("username") or data.get("Username") or "")
    password = str(data.get("password") or data.get("Password") or "")
    if not user and data.get("auth"):
        try:
            user, _, password = base64.b64decode(str(data["auth"])).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidParameter("invalid auth field in credentials") from None
    return Credentials(user, password, str(data.get("identitytoken") or data.get("IdentityToken") or ""),
                       str(data.get("registrytoken") or ""))


_PARAM = re.compile(r'([a-zA-Z_]+)=(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "basic" or "bearer", lower case
    params: dict[str, str]


def parse_challenges(header: str) -> list[Challenge]:
    """Parse `WWW-Authenticate` values: `Bearer realm="...",service="...",scope="..."`."""
    out: list[Challenge] = []
    # Split on a scheme word at the start or after a comma that is followed by `Word `.
    for part in re.split(r",\s*(?=[A-Za-z]+\s+[a-zA-Z_]+=)", header.strip()):
        m = re.match(r"\s*([A-Za-z]+)\s*(.*)$", part, re.S)
        if not m:
            continue
        params = {k.lower(): (q if q else u).replace('\\"', '"') for k, q, u in _PARAM.findall(m.group(2))}
        out.append(Challenge(m.group(1).lower(), params))
    return out
