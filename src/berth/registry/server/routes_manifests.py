"""Manifests, tags, catalog, referrers and the `/v2/` base endpoint."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from berth.api.http.server import Request, Response

from .errors import RegistryError
from .manifests import OCI_INDEX
from .proxy import PullThrough
from .router import Router
from .service import Registry


def _json(obj: Any, content_type: str = "application/json", headers: list[tuple[str, str]] | None = None,
          ) -> Response:
    return Response(200, json.dumps(obj).encode(), content_type, headers or [])


def _page_args(req: Request) -> tuple[int | None, str | None]:
    n = req.q("n")
    if n is not None and not n.isdigit():
        raise RegistryError(400, "PAGINATION_NUMBER_INVALID", f"invalid number of results: {n!r}")
    return (int(n) if n is not None else None), req.q("last")


def _next_link(path: str, items: list[str], n: int | None) -> list[tuple[str, str]]:
    query = urlencode({"last": items[-1], **({"n": str(n)} if n is not None else {})})
    return [("Link", f'<{path}?{query}>; rel="next"')]


def register(router: Router, reg: Registry, proxy: PullThrough | None = None) -> None:
    async def base(req: Request) -> Response:
        return _json({})

    async def get_manifest(req: Request) -> Response:
        if proxy is not None:
            await proxy.refresh_manifest(req.params["name"], req.params["reference"])
        m = reg.get_manifest(req.params["name"], req.params["reference"])
        return Response(200, m.body, m.media_type, [("Docker-Content-Digest", m.digest), ("ETag", f'"{m.digest}"')])

    async def put_manifest(req: Request) -> Response:
        name, reference = req.params["name"], req.params["reference"]
        limit = reg.config.max_manifest_bytes
        too_big = RegistryError(413, "MANIFEST_INVALID", f"manifest is larger than {limit} bytes")
        length = req.headers.get("content-length")
        if length and length.isdigit() and int(length) > limit:
            raise too_big
        body = bytearray()
        async for chunk in req.stream():
            body += chunk
            if len(body) > limit:  # chunked bodies have no length up front
                raise too_big
        digest, parsed = reg.put_manifest(name, reference, bytes(body), req.headers.get("content-type"),
                                          req.query.get("tag", []))
        headers = [("Location", f"/v2/{name}/manifests/{digest}"), ("Docker-Content-Digest", digest)]
        if parsed.subject:
            headers.append(("OCI-Subject", parsed.subject))
        return Response(201, b"", None, headers)

    async def delete_manifest(req: Request) -> Response:
        reg.delete_manifest(req.params["name"], req.params["reference"])
        return Response(202, b"", None, [("Content-Length", "0")])

    async def tags_list(req: Request) -> Response:
        name = req.params["name"]
        n, last = _page_args(req)
        tags, more = reg.tags(name, n, last)
        return _json({"name": name, "tags": tags}, headers=_next_link(req.path, tags, n) if more else [])

    async def catalog(req: Request) -> Response:
        n, last = _page_args(req)
        names, more = reg.catalog(n, last)
        return _json({"repositories": names}, headers=_next_link(req.path, names, n) if more else [])

    async def referrers(req: Request) -> Response:
        artifact_type = req.q("artifactType")
        found = reg.referrers(req.params["name"], req.params["digest"], artifact_type)
        headers = [("OCI-Filters-Applied", "artifactType")] if artifact_type else []
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": found}
        return _json(index, OCI_INDEX, headers)

    router.add("/v2/", GET=base)
    router.add("/v2/_catalog", GET=catalog)
    router.add("/v2/{name}/tags/list", GET=tags_list)
    if proxy is not None:  # a cache takes no writes
        async def refuse(req: Request) -> Response:
            raise proxy.refuse_writes()

        put_manifest = delete_manifest = refuse
    router.add("/v2/{name}/manifests/{reference}", GET=get_manifest, PUT=put_manifest, DELETE=delete_manifest)
    router.add("/v2/{name}/referrers/{digest}", GET=referrers)
