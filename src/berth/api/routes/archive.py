"""A container's filesystem as archives: `docker cp` (GET/HEAD/PUT archive), `export`, `commit`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from berth.common.errors import InvalidParameter

from ..http.router import Router
from ..http.server import Request, Response, StreamResponse, json_response

STAT_HEADER = "X-Docker-Container-Path-Stat"


class ArchiveBackend(Protocol):
    async def stat_path(self, ref: str, path: str) -> str:
        """The base64 JSON path stat (name, size, mode, mtime, linkTarget) of `path`."""
        ...

    async def get_archive(self, ref: str, path: str) -> tuple[str, AsyncIterator[bytes]]:
        """(path stat, tar stream of `path`); the stream must not begin before the stat is known."""
        ...

    async def put_archive(self, ref: str, path: str, body: AsyncIterator[bytes], no_overwrite_dir_non_dir: bool,
                          copy_uid_gid: bool) -> None: ...

    def export(self, ref: str) -> AsyncIterator[bytes]: ...


class CommitBackend(Protocol):
    async def commit(self, ref: str, repo: str, tag: str, comment: str, author: str, pause: bool,
                     changes: list[str], config: dict[str, Any] | None) -> str:
        """Make an image of the container; returns its ID."""
        ...


def register(r: Router, b: ArchiveBackend, commit_b: CommitBackend) -> None:
    async def archive_get(req: Request) -> Response | StreamResponse:
        path = req.q("path") or ""
        if not path:
            raise InvalidParameter("path cannot be empty")
        if req.method == "HEAD":
            st = await b.stat_path(req.params["id"], path)
            return Response(200, content_type=None, headers=[(STAT_HEADER, st)])
        st, body = await b.get_archive(req.params["id"], path)
        return StreamResponse(body, content_type="application/x-tar", headers=[(STAT_HEADER, st)])

    async def archive_put(req: Request) -> Response:
        path = req.q("path") or ""
        if not path:
            raise InvalidParameter("path cannot be empty")
        await b.put_archive(req.params["id"], path, req.stream(), req.qbool("noOverwriteDirNonDir"),
                            req.qbool("copyUIDGID"))
        return Response(200, content_type=None)

    async def export(req: Request) -> StreamResponse:
        return StreamResponse(b.export(req.params["id"]), content_type="application/x-tar")

    async def commit(req: Request) -> Response:
        ref = req.q("container") or ""
        if not ref:
            raise InvalidParameter("container is required")
        config = await req.json()
        if config is not None and not isinstance(config, dict):
            raise InvalidParameter("the commit config must be a JSON object")
        image_id = await commit_b.commit(ref, req.q("repo") or "", req.q("tag") or "", req.q("comment") or "",
                                         req.q("author") or "", req.qbool("pause", True),
                                         req.query.get("changes") or [], config)
        return json_response({"Id": image_id}, 201)

    r.add("GET", "/containers/{id}/archive", archive_get)
    r.add("PUT", "/containers/{id}/archive", archive_put)
    r.add("GET", "/containers/{id}/export", export)
    r.add("POST", "/commit", commit)
