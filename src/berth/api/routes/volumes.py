"""/volumes routes."""

from __future__ import annotations

from typing import Any, Protocol

from berth.common.errors import InvalidParameter

from ..http.router import Router, version_at_least
from ..http.server import Request, Response, json_response
from .filters import check_keys, parse_filters


class VolumeBackend(Protocol):
    def list_volumes(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]: ...
    def create(self, name: str, driver: str, options: dict[str, str], labels: dict[str, str]) -> dict[str, Any]: ...
    def inspect(self, name: str) -> dict[str, Any]: ...
    def remove(self, name: str, force: bool) -> None: ...
    def prune(self, filters: dict[str, list[str]], all_: bool) -> dict[str, Any]: ...


def _str_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidParameter(f"{what} must be an object")
    return {str(k): str(v) for k, v in value.items()}


def register(r: Router, b: VolumeBackend) -> None:
    async def list_(req: Request) -> Response:
        filters = parse_filters(req.q("filters"))
        check_keys(filters, {"dangling", "driver", "label", "name"})
        return json_response({"Volumes": b.list_volumes(filters), "Warnings": None})

    async def create(req: Request) -> Response:
        body = await req.json() or {}
        if not isinstance(body, dict):
            raise InvalidParameter("volume create: the body must be a JSON object")
        name = body.get("Name") or ""
        if not isinstance(name, str):
            raise InvalidParameter("Name must be a string")
        vol = b.create(name, str(body.get("Driver") or "local"), _str_map(body.get("DriverOpts"), "DriverOpts"),
                       _str_map(body.get("Labels"), "Labels"))
        return json_response(vol, 201)

    async def inspect(req: Request) -> Response:
        return json_response(b.inspect(req.params["name"]))

    async def remove(req: Request) -> Response:
        b.remove(req.params["name"], req.qbool("force"))
        return Response(204, content_type=None)

    async def prune(req: Request) -> Response:
        filters = parse_filters(req.q("filters"))
        check_keys(filters, {"label", "label!", "all"})
        # API 1.42 made prune leave named volumes alone unless `all=true` is given.
        all_ = not version_at_least(req, "1.42") or any(
            v.lower() in ("1", "true") for v in filters.pop("all", []))
        return json_response(b.prune(filters, all_))

    r.add("GET", "/volumes", list_)
    r.add("POST", "/volumes/create", create)
    r.add("POST", "/volumes/prune", prune)
    r.add("GET", "/volumes/{name}", inspect)
    r.add("DELETE", "/volumes/{name}", remove)
