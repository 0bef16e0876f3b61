"""/_ping, /version, /info, /events, /system/df."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Protocol

from ..http.router import API_VERSION, Router
from ..http.server import Request, Response, StreamResponse, json_response
from ..http.streams import json_line
from .filters import check_keys, parse_filters


class SystemBackend(Protocol):
    def version(self) -> dict[str, Any]: ...
    def info(self) -> dict[str, Any]: ...
    def events(self, since: float | None, until: float | None,
               filters: dict[str, list[str]]) -> AsyncIterator[dict[str, Any]]: ...
    def df(self) -> dict[str, Any]: ...


def _ts(raw: str | None) -> float | None:
    if raw is None or raw == "":
        return None
    return float(raw)


def register(r: Router, b: SystemBackend) -> None:
    async def ping(req: Request) -> Response:
        body = b"" if req.method == "HEAD" else b"OK"
        return Response(200, body, content_type="text/plain; charset=utf-8", headers=[
            ("Cache-Control", "no-cache, no-store, must-revalidate"), ("Pragma", "no-cache"),
            ("Builder-Version", "1")])

    async def version(req: Request) -> Response:
        return json_response(b.version())

    async def info(req: Request) -> Response:
        return json_response(b.info())

    async def events(req: Request) -> StreamResponse:
        filters = parse_filters(req.q("filters"))
        check_keys(filters, {"config", "container", "daemon", "event", "image", "label", "network",
                             "node", "plugin", "scope", "secret", "service", "type", "volume"})
        stream = b.events(_ts(req.q("since")), _ts(req.q("until")), filters)

        async def body() -> AsyncIterator[bytes]:
            async for ev in stream:
                yield json_line(ev)

        return StreamResponse(body(), eager=True)

    async def df(req: Request) -> Response:
        # sizes are measured on disk (writable layers, volumes): not on the event loop
        return json_response(await asyncio.to_thread(b.df))

    r.add("GET", "/_ping", ping)
    r.add("GET", "/version", version)
    r.add("GET", "/info", info)
    r.add("GET", "/events", events)
    r.add("GET", "/system/df", df)


__all__ = ["register", "SystemBackend", "API_VERSION"]
