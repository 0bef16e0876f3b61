"""/images routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from berth.common.errors import InvalidParameter

from ..http.router import Router
from ..http.server import Request, Response, StreamResponse, json_response
from ..http.streams import json_progress
from .filters import check_keys, parse_filters

Progress = AsyncIterator[dict[str, Any]]


class ImageBackend(Protocol):
    def list_images(self, all_: bool, filters: dict[str, list[str]], digests: bool) -> list[dict[str, Any]]: ...
    def inspect(self, name: str) -> dict[str, Any]: ...
    def history(self, name: str) -> list[dict[str, Any]]: ...
    def tag(self, name: str, repo: str, tag: str | None) -> None: ...
    async def delete(self, name: str, force: bool, prune: bool) -> list[dict[str, str]]: ...
    def load(self, body: AsyncIterator[bytes], quiet: bool) -> Progress: ...
    def save(self, names: list[str]) -> AsyncIterator[bytes]: ...
    def import_image(self, src: str, body: AsyncIterator[bytes], repo: str, tag: str,
                     changes: list[str], message: str) -> Progress: ...
    def pull(self, image: str, tag: str, platform: str, auth: str | None = None) -> Progress: ...
    async def prune(self, filters: dict[str, list[str]]) -> dict[str, Any]: ...


def register(r: Router, b: ImageBackend) -> None:
    async def list_(req: Request) -> Response:
        filters = parse_filters(req.q("filters"))
        check_keys(filters, {"before", "dangling", "label", "reference", "since", "until"})
        if req.q("filter"):
            filters.setdefault("reference", []).append(req.q("filter") or "")
        return json_response(b.list_images(req.qbool("all"), filters, req.qbool("digests")))

    async def inspect(req: Request) -> Response:
        return json_response(b.inspect(req.params["name"]))

    async def history(req: Request) -> Response:
        return json_response(b.history(req.params["name"]))

    async def tag(req: Request) -> Response:
        repo = req.q("repo") or ""
        if not repo:
            raise InvalidParameter("repository name must have at least one component")
        b.tag(req.params["name"], repo, req.q("tag"))
        return Response(201, content_type=None)

    async def delete(req: Request) -> Response:
        return json_response(await b.delete(req.params["name"], req.qbool("force"),
                                            not req.qbool("noprune")))

    async def load(req: Request) -> StreamResponse:
        return StreamResponse(json_progress(b.load(req.stream(), req.qbool("quiet")), in_band=True))

    async def save_one(req: Request) -> StreamResponse:
        return StreamResponse(b.save([req.params["name"]]), content_type="application/x-tar")

    async def save_many(req: Request) -> StreamResponse:
        names = req.query.get("names") or []
        if not names:
            raise InvalidParameter("no images specified")
        return StreamResponse(b.save(names), content_type="application/x-tar")

    async def create(req: Request) -> StreamResponse:
        src = req.q("fromSrc")
        if src:
            changes = req.query.get("changes") or []
            stream = b.import_image(src, req.stream(), req.q("repo") or "", req.q("tag") or "",
                                    changes, req.q("message") or "")
        else:
            image = req.q("fromImage") or ""
            if not image:
                raise InvalidParameter("either fromSrc or fromImage must be given")
            stream = b.pull(image, req.q("tag") or "", req.q("platform") or "",
                            req.headers.get("x-registry-auth"))
        return StreamResponse(json_progress(stream))

    async def prune(req: Request) -> Response:
        filters = parse_filters(req.q("filters"))
        check_keys(filters, {"dangling", "label", "label!", "until"})
        return json_response(await b.prune(filters))

    r.add("GET", "/images/json", list_)
    r.add("POST", "/images/load", load)
    r.add("GET", "/images/get", save_many)
    r.add("POST", "/images/create", create)
    r.add("POST", "/images/prune", prune)
    r.add("GET", "/images/{name*}/json", inspect)
    r.add("GET", "/images/{name*}/history", history)
    r.add("GET", "/images/{name*}/get", save_one)
    r.add("POST", "/images/{name*}/tag", tag)
    r.add("DELETE", "/images/{name*}", delete)
