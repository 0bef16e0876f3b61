"""Registry routes: `POST /images/{name}/push`, `GET /distribution/{name}/json` and `POST /auth`
(pull is `POST /images/create`)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Protocol

from berth.common.errors import InvalidParameter

from ..http.router import Router
from ..http.server import Request, Response, StreamResponse, json_response
from ..http.streams import json_progress

Progress = AsyncIterator[dict[str, Any]]


class DistributionBackend(Protocol):
    def push(self, name: str, tag: str, auth: str | None) -> Progress: ...
    async def inspect(self, name: str, auth: str | None) -> dict[str, Any]: ...
    async def login(self, body: dict[str, Any]) -> dict[str, Any]: ...


def register(r: Router, b: DistributionBackend) -> None:
    async def push(req: Request) -> StreamResponse:
        return StreamResponse(json_progress(b.push(req.params["name"], req.q("tag") or "",
                                               req.headers.get("x-registry-auth"))))

    async def inspect(req: Request) -> Response:
        return json_response(await b.inspect(req.params["name"], req.headers.get("x-registry-auth")))

    async def auth(req: Request) -> Response:
        raw = await req.read()
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise InvalidParameter("invalid JSON body") from None
        if not isinstance(body, dict):
            raise InvalidParameter("invalid JSON body")
        return json_response(await b.login(body))

    r.add("POST", "/images/{name*}/push", push)
    r.add("GET", "/distribution/{name*}/json", inspect)
    r.add("POST", "/auth", auth)
