"""The token endpoint of Docker's token auth: `GET /token?service=...&scope=...` with Basic auth
(or none, for an anonymous token), and the OAuth2 `POST /token` password grant.

Each requested scope is cut down to what the policy gives the user; a scope the user has no
right to is left out of the token rather than refused, as distribution's token spec says. A wrong
password is 401 UNAUTHORIZED.
"""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs

from berth.api.http.server import Request, Response

from .auth import TokenAuthorizer, parse_basic
from .errors import RegistryError, unauthorized
from .policy import Scope, parse_scope
from .router import Router

MAX_FORM = 64 * 1024


def _scopes(values: list[str]) -> list[Scope]:
    out = []
    for value in values:
        for text in value.split(" "):
            s = parse_scope(text) if text else None
            if s is not None:
                out.append(s)
    return out


def register(router: Router, auth: TokenAuthorizer) -> None:
    async def login(req: Request, user: str, password: str) -> str:
        if auth.users is None or not await auth.users.check(user, password):
            realm = auth.users.realm if auth.users else "berth-registry"
            raise unauthorized(realm, message="incorrect username or password")
        return user

    def check_service(service: str | None) -> None:
        if service and service != auth.signer.service:
            raise RegistryError(400, "UNSUPPORTED", f"unknown service {service!r}")

    async def answer(req: Request, user: str, scopes: list[Scope]) -> Response:
        token, ttl = await auth.issue(req, user, scopes)
        issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        body = {"token": token, "access_token": token, "expires_in": ttl, "issued_at": issued}
        return Response(200, json.dumps(body).encode(), "application/json", [])

    async def get_token(req: Request) -> Response:
        check_service(req.q("service"))
        creds = parse_basic(req.headers.get("authorization"))
        user = await login(req, *creds) if creds else ""
        return await answer(req, user, _scopes(req.query.get("scope", [])))

    async def post_token(req: Request) -> Response:
        raw = bytearray()
        async for chunk in req.stream():
            raw += chunk
            if len(raw) > MAX_FORM:
                raise RegistryError(413, "UNSUPPORTED", "form too large")
        form = parse_qs(raw.decode("utf-8", "replace"))
        check_service((form.get("service") or [""])[0])
        grant_type = (form.get("grant_type") or [""])[0]
        if grant_type != "password":
            raise RegistryError(400, "UNSUPPORTED", f"unsupported grant_type {grant_type!r}")
        user = await login(req, (form.get("username") or [""])[0], (form.get("password") or [""])[0])
        return await answer(req, user, _scopes(form.get("scope", [])))

    router.add("/token", GET=get_token, POST=post_token)
