"""/containers/{id}/exec and /exec/{id} routes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ..http.router import Router
from ..http.server import HijackResponse, RawStream, Request, Response, json_response
from ..http.streams import stream_content_type


class ExecBackend(Protocol):
    def create(self, ref: str, body: Any) -> dict[str, Any]: ...
    def start(self, exec_id: str, detach: bool, tty: bool) -> tuple[bool, Callable[[RawStream], Awaitable[None]]]: ...
    async def start_detached(self, exec_id: str) -> None: ...
    def inspect(self, exec_id: str) -> dict[str, Any]: ...
    def resize(self, exec_id: str, height: int, width: int) -> None: ...


def register(r: Router, b: ExecBackend) -> None:
    async def create(req: Request) -> Response:
        body = await req.json(required=True)
        return json_response(b.create(req.params["id"], body), 201)

    async def start(req: Request) -> Response | HijackResponse:
        body = await req.json() or {}
        detach = bool(body.get("Detach"))
        if detach:
            await b.start_detached(req.params["id"])
            return Response(200, content_type=None)
        tty, run = b.start(req.params["id"], detach, bool(body.get("Tty")))
        return HijackResponse(run, content_type=stream_content_type(req.api_version, tty))

    async def inspect(req: Request) -> Response:
        return json_response(b.inspect(req.params["id"]))

    async def resize(req: Request) -> Response:
        b.resize(req.params["id"], req.qint("h", 0) or 0, req.qint("w", 0) or 0)
        return Response(200, content_type=None)

    r.add("POST", "/containers/{id}/exec", create)
    r.add("POST", "/exec/{id}/start", start)
    r.add("GET", "/exec/{id}/json", inspect)
    r.add("POST", "/exec/{id}/resize", resize)
