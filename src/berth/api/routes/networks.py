"""/networks routes: list, inspect, create, remove, prune, connect, disconnect."""

from __future__ import annotations

from typing import Any, Protocol

from berth.common.errors import InvalidParameter, NotFound

from ..http.router import Router
from ..http.server import Request, Response, json_response
from .filters import check_keys, parse_filters


class NetworkBackend(Protocol):
    def list_networks(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]: ...
    def inspect(self, ref: str) -> dict[str, Any]: ...
    async def create(self, body: dict[str, Any]) -> dict[str, Any]: ...
    async def remove(self, ref: str) -> None: ...
    async def prune(self, filters: dict[str, list[str]]) -> dict[str, Any]: ...
    async def connect(self, ref: str, container: str, endpoint_config: dict[str, Any]) -> None: ...
    async def disconnect(self, ref: str, container: str, force: bool) -> None: ...


async def _body(req: Request) -> dict[str, Any]:
    body = await req.json() or {}
    if not isinstance(body, dict):
        raise InvalidParameter("the request body must be a JSON object")
    return body


def register(r: Router, b: NetworkBackend) -> None:
    async def list_(req: Request) -> Response:
        filters = parse_filters(req.q("filters"))
        check_keys(filters, {"dangling", "driver", "id", "label", "name", "scope", "type"})
        return json_response(b.list_networks(filters))

    async def inspect(req: Request) -> Response:
        view = b.inspect(req.params["id"])
        scope = req.q("scope")
        if scope and view.get("Scope") != scope:  # as dockerd: looked up in that scope only
            raise NotFound(f"network {req.params['id']} not found")
        return json_response(view)

    async def create(req: Request) -> Response:
        return json_response(await b.create(await _body(req)), 201)

    async def remove(req: Request) -> Response:
        await b.remove(req.params["id"])
        return Response(204, content_type=None)

    async def prune(req: Request) -> Response:
        filters = parse_filters(req.q("filters"))
        check_keys(filters, {"label", "label!", "until"})
        return json_response(await b.prune(filters))

    async def connect(req: Request) -> Response:
        body = await _body(req)
        cfg = body.get("EndpointConfig") or {}
        if not isinstance(cfg, dict):
            raise InvalidParameter("EndpointConfig must be an object")
        await b.connect(req.params["id"], str(body.get("Container") or ""), cfg)
        return Response(200, content_type=None)

    async def disconnect(req: Request) -> Response:
        body = await _body(req)
        await b.disconnect(req.params["id"], str(body.get("Container") or ""), bool(body.get("Force")))
        return Response(200, content_type=None)

    r.add("GET", "/networks", list_)
    r.add("POST", "/networks/create", create)
    r.add("POST", "/networks/prune", prune)
    r.add("GET", "/networks/{id}", inspect)
    r.add("DELETE", "/networks/{id}", remove)
    r.add("POST", "/networks/{id}/connect", connect)
    r.add("POST", "/networks/{id}/disconnect", disconnect)
