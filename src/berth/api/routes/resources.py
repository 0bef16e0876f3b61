"""A container's resources: `GET /containers/{id}/stats` and `POST /containers/{id}/update`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from ..http.router import Router
from ..http.server import Request, Response, StreamResponse, json_response
from ..http.streams import json_line


class ResourceBackend(Protocol):
    def stats(self, ref: str, stream: bool, one_shot: bool) -> AsyncIterator[dict[str, Any]]:
        """Stats documents, one a second while `stream`, else exactly one. Raises NotFound at once."""
        ...

    async def update(self, ref: str, body: Any) -> dict[str, Any]: ...


def register(r: Router, b: ResourceBackend) -> None:
    async def stats(req: Request) -> Response | StreamResponse:
        stream = req.qbool("stream", True)
        docs = b.stats(req.params["id"], stream, req.qbool("one-shot"))
        if not stream:
            try:
                return json_response(await anext(docs))
            finally:
                aclose = getattr(docs, "aclose", None)
                if aclose is not None:
                    await aclose()

        async def body() -> AsyncIterator[bytes]:
            async for doc in docs:
                yield json_line(doc)

        return StreamResponse(body())

    async def update(req: Request) -> Response:
        return json_response(await b.update(req.params["id"], await req.json(required=True)))

    r.add("GET", "/containers/{id}/stats", stats)
    r.add("POST", "/containers/{id}/update", update)
