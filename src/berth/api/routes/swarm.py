"""/swarm, /nodes, and the swarm objects berth does not run (services, tasks, secrets, configs)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from berth.common.errors import InvalidParameter

from ..http.router import Router
from ..http.server import Request, Response, json_response
from .filters import parse_filters


class SwarmBackend(Protocol):
    async def init(self, body: dict[str, Any]) -> str: ...
    async def leave(self, force: bool) -> None: ...
    async def join(self, body: dict[str, Any]) -> None: ...
    def update(self) -> None: ...
    def unlock_key(self) -> dict[str, Any]: ...
    def unlock(self) -> None: ...
    def inspect(self) -> dict[str, Any]: ...
    def nodes(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]: ...
    def node(self, ref: str) -> dict[str, Any]: ...
    def unsupported(self, what: str) -> None: ...


async def _body(req: Request) -> dict[str, Any]:
    body = await req.json() or {}
    if not isinstance(body, dict):
        raise InvalidParameter("the request body must be a JSON object")
    return body


def register(r: Router, b: SwarmBackend) -> None:
    async def init(req: Request) -> Response:
        return json_response(await b.init(await _body(req)))

    async def join(req: Request) -> Response:
        await b.join(await _body(req))
        return Response(200, content_type=None)

    async def leave(req: Request) -> Response:
        await b.leave(req.qbool("force"))
        return Response(200, content_type=None)

    async def update(req: Request) -> Response:
        b.update()
        return Response(200, content_type=None)

    async def inspect(req: Request) -> Response:
        return json_response(b.inspect())

    async def unlock_key(req: Request) -> Response:
        return json_response(b.unlock_key())

    async def unlock(req: Request) -> Response:
        b.unlock()
        return Response(200, content_type=None)

    async def nodes(req: Request) -> Response:
        return json_response(b.nodes(parse_filters(req.q("filters"))))

    async def node(req: Request) -> Response:
        return json_response(b.node(req.params["id"]))

    async def node_change(req: Request) -> Response:
        b.unsupported("node changes (its one node is this engine)")
        return Response(200, content_type=None)

    r.add("POST", "/swarm/init", init)
    r.add("POST", "/swarm/join", join)
    r.add("POST", "/swarm/leave", leave)
    r.add("POST", "/swarm/update", update)
    r.add("GET", "/swarm", inspect)
    r.add("GET", "/swarm/unlockkey", unlock_key)
    r.add("POST", "/swarm/unlock", unlock)
    r.add("GET", "/nodes", nodes)
    r.add("GET", "/nodes/{id}", node)
    r.add("DELETE", "/nodes/{id}", node_change)
    r.add("POST", "/nodes/{id}/update", node_change)

    def unsupported(what: str) -> Callable[[Request], Awaitable[Response]]:
        async def handler(req: Request) -> Response:
            b.unsupported(what)
            return Response(200, content_type=None)
        return handler

    for kind in ("services", "tasks", "secrets", "configs"):
        h = unsupported(kind)
        r.add("GET", f"/{kind}", h)
        r.add("GET", f"/{kind}/{{id}}", h)
        if kind != "tasks":
            r.add("POST", f"/{kind}/create", h)
            r.add("DELETE", f"/{kind}/{{id}}", h)
            r.add("POST", f"/{kind}/{{id}}/update", h)
        if kind in ("services", "tasks"):
            r.add("GET", f"/{kind}/{{id}}/logs", h)
