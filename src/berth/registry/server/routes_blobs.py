"""Blob and upload endpoints: `/v2/<name>/blobs/<digest>` and `/v2/<name>/blobs/uploads/...`."""

from __future__ import annotations

from berth.api.http.server import FileResponse, Request, Response

from .errors import RegistryError
from .names import check_digest
from .proxy import PullThrough
from .ranges import Unsatisfiable, parse_range
from .router import Router
from .service import Registry, upload_range


def _length(req: Request) -> int | None:
    value = req.headers.get("content-length")
    return int(value) if value and value.isdigit() else None


def _created(name: str, digest: str) -> Response:
    return Response(201, b"", None, [("Location", f"/v2/{name}/blobs/{digest}"),
                                     ("Docker-Content-Digest", digest)])


def _upload_state(status: int, name: str, uuid: str, size: int) -> Response:
    return Response(status, b"", None, [("Location", f"/v2/{name}/blobs/uploads/{uuid}"),
                                        ("Range", upload_range(size)), ("Docker-Upload-UUID", uuid)])


def register(router: Router, reg: Registry, proxy: PullThrough | None = None) -> None:
    async def get_blob(req: Request) -> Response:
        name, digest = req.params["name"], req.params["digest"]
        if proxy is not None:
            await proxy.ensure_blob(name, digest)
        path, size = reg.stat_blob(name, digest)
        headers = [("Docker-Content-Digest", digest), ("Accept-Ranges", "bytes"), ("ETag", f'"{digest}"')]
        try:
            span = parse_range(req.headers.get("range"), size)
        except Unsatisfiable:
            raise RegistryError(416, "RANGE_INVALID", "requested range not satisfiable", None,
                                [("Content-Range", f"bytes */{size}")]) from None
        if span is None:
            return FileResponse(200, b"", "application/octet-stream", headers, path, 0, size)
        first, last = span
        headers.append(("Content-Range", f"bytes {first}-{last}/{size}"))
        return FileResponse(206, b"", "application/octet-stream", headers, path, first, last - first + 1)

    async def delete_blob(req: Request) -> Response:
        reg.delete_blob(req.params["name"], req.params["digest"])
        return Response(202, b"", None, [("Content-Length", "0")])

    async def start_upload(req: Request) -> Response:
        name = req.params["name"]
        mount, source = req.q("mount"), req.q("from")
        # Mounting reads the source repository: only for a client that may pull from it.
        if mount and source and await router.permits(req, "repository", source, "pull"):
            if reg.mount_blob(name, source, mount):
                return _created(name, mount)
            # Not there to mount: the spec says fall back to an ordinary upload session.
        digest = req.q("digest")
        algo = req.q("digest-algorithm") or (check_digest(digest)[0] if digest else "sha256")
        uuid = reg.start_upload(name, algo)
        if digest:
            await reg.finish_upload(name, uuid, digest, req.stream(), None, None)
            return _created(name, digest)
        return _upload_state(202, name, uuid, 0)

    async def upload_status(req: Request) -> Response:
        name, uuid = req.params["name"], req.params["uuid"]
        return _upload_state(204, name, uuid, reg.upload_size(name, uuid))

    async def patch_upload(req: Request) -> Response:
        name, uuid = req.params["name"], req.params["uuid"]
        size = await reg.append_upload(name, uuid, req.stream(), req.headers.get("content-range"),
                                       _length(req))
        return _upload_state(202, name, uuid, size)

    async def put_upload(req: Request) -> Response:
        name, uuid = req.params["name"], req.params["uuid"]
        digest = await reg.finish_upload(name, uuid, req.q("digest"), req.stream(),
                                         req.headers.get("content-range"), _length(req))
        return _created(name, digest)

    async def cancel_upload(req: Request) -> Response:
        reg.cancel_upload(req.params["name"], req.params["uuid"])
        return Response(204, b"", None)

    if proxy is not None:  # a cache takes no writes
        async def refuse(req: Request) -> Response:
            raise proxy.refuse_writes()

        start_upload = upload_status = patch_upload = put_upload = cancel_upload = delete_blob = refuse
    router.add("/v2/{name}/blobs/uploads/", POST=start_upload)
    router.add("/v2/{name}/blobs/uploads", POST=start_upload)  # some clients drop the slash
    router.add("/v2/{name}/blobs/uploads/{uuid}", GET=upload_status, PATCH=patch_upload, PUT=put_upload,
               DELETE=cancel_upload)
    router.add("/v2/{name}/blobs/{digest}", GET=get_blob, DELETE=delete_blob)
