"""/containers routes: parse the request, call one backend method, shape the response."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from berth.common.errors import InvalidParameter, SystemError_

from ..http.router import Router, version_at_least
from ..http.server import HijackResponse, RawStream, Request, Response, StreamResponse, json_response
from ..http.streams import frame, stream_content_type
from ..http.websocket import handshake
from .filters import check_keys, parse_filters


@dataclass
class LogOptions:
    stdout: bool
    stderr: bool
    follow: bool
    since: float
    until: float
    timestamps: bool
    tail: int            # -1 = all
    details: bool = False  # each line after its attributes (`--log-opt labels=/env=`)


@dataclass
class AttachOptions:
    stream: bool
    logs: bool
    stdin: bool
    stdout: bool
    stderr: bool
    detach_keys: str | None
    multiplex: bool = True  # frame stdout/stderr (non-TTY); never over a websocket


# (stream number 1/2, bytes) chunks of a container's output
Output = AsyncIterator[tuple[int, bytes]]


class ContainerBackend(Protocol):
    async def create(self, body: Any, name: str | None) -> dict[str, Any]: ...
    async def start(self, ref: str) -> None: ...
    async def stop(self, ref: str, timeout: int | None, signal: str | None) -> None: ...
    async def restart(self, ref: str, timeout: int | None, signal: str | None) -> None: ...
    async def kill(self, ref: str, signal: str | None) -> None: ...
    async def remove(self, ref: str, force: bool, volumes: bool) -> None: ...
    async def remove_link(self, parent: str, alias: str, link: bool, force: bool, volumes: bool) -> None: ...
    def ps(self, all_: bool, limit: int, size: bool, filters: dict[str, list[str]]) -> list[dict[str, Any]]: ...
    def inspect(self, ref: str, size: bool) -> dict[str, Any]: ...
    def logs(self, ref: str, opts: LogOptions) -> tuple[bool, Output]: ...
    def wait(self, ref: str, condition: str) -> Awaitable[int]: ...
    def rename(self, ref: str, name: str) -> None: ...
    async def top(self, ref: str, ps_args: str) -> dict[str, Any]: ...
    async def changes(self, ref: str) -> list[dict[str, Any]] | None: ...
    def attach(self, ref: str, opts: AttachOptions) -> tuple[bool, Callable[[RawStream], Awaitable[None]]]: ...
    def resize(self, ref: str, height: int, width: int) -> None: ...
    async def pause(self, ref: str) -> None: ...
    async def unpause(self, ref: str) -> None: ...
    async def prune(self, filters: dict[str, list[str]]) -> dict[str, Any]: ...


def _timeout(req: Request) -> int | None:
    return req.qint("t") if req.q("t") not in (None, "") else req.qint("timeout")


def _time_param(req: Request, name: str) -> float:
    raw = req.q(name)
    if not raw:
        return 0.0
    try:
        return float(raw)
    except ValueError:
        raise InvalidParameter(f"invalid value for {name}: {raw}") from None


def register(r: Router, b: ContainerBackend) -> None:
    async def create(req: Request) -> Response:
        body = await req.json(required=True)
        return json_response(await b.create(body, req.q("name")), 201)

    async def list_(req: Request) -> Response:
        filters = parse_filters(req.q("filters"))
        check_keys(filters, {"ancestor", "before", "expose", "exited", "health", "id", "isolation",
                             "is-task", "label", "name", "network", "publish", "since", "status",
                             "volume", *getattr(b, "extra_filters", ())})  # e.g. the cluster's `node`
        limit = req.qint("limit", -1) or -1
        return json_response(b.ps(req.qbool("all"), limit, req.qbool("size"), filters))

    async def inspect(req: Request) -> Response:
        return json_response(b.inspect(req.params["id"], req.qbool("size")))

    async def start(req: Request) -> Response:
        await req.drain()
        await b.start(req.params["id"])
        return Response(204, content_type=None)

    async def stop(req: Request) -> Response:
        await b.stop(req.params["id"], _timeout(req), req.q("signal"))
        return Response(204, content_type=None)

    async def restart(req: Request) -> Response:
        await b.restart(req.params["id"], _timeout(req), req.q("signal"))
        return Response(204, content_type=None)

    async def kill(req: Request) -> Response:
        await b.kill(req.params["id"], req.q("signal"))
        return Response(204, content_type=None)

    async def remove(req: Request) -> Response:
        if req.qbool("link"):  # dockerd: a link name has a parent, `/name` alone is the container's own
            raise SystemError_("Conflict, cannot remove the default link name of the container")  # 500 as dockerd
        await b.remove(req.params["id"], req.qbool("force"), req.qbool("v"))
        return Response(204, content_type=None)

    async def remove_link(req: Request) -> Response:
        # `docker rm --link parent/alias`: the link name has a slash
        await b.remove_link(req.params["id"], req.params["alias"], req.qbool("link"), req.qbool("force"),
                            req.qbool("v"))
        return Response(204, content_type=None)

    async def logs(req: Request) -> StreamResponse:
        tail_raw = req.q("tail", "all") or "all"
        try:
            tail = -1 if tail_raw == "all" else int(tail_raw)
        except ValueError:
            raise InvalidParameter(f"invalid tail value: {tail_raw}") from None
        opts = LogOptions(stdout=req.qbool("stdout"), stderr=req.qbool("stderr"), follow=req.qbool("follow"),
                          since=_time_param(req, "since"), until=_time_param(req, "until"),
                          timestamps=req.qbool("timestamps"), tail=tail, details=req.qbool("details"))
        if not (opts.stdout or opts.stderr):
            raise InvalidParameter("Bad parameters: you must choose at least one stream")
        tty, out = b.logs(req.params["id"], opts)

        async def body() -> AsyncIterator[bytes]:
            async for stream, data in out:
                yield data if tty else frame(stream, data)

        return StreamResponse(body(), content_type=stream_content_type(req.api_version, tty), eager=True)

    async def wait(req: Request) -> StreamResponse:
        waiter = b.wait(req.params["id"], req.q("condition", "") or "")

        async def body() -> AsyncIterator[bytes]:
            code = await waiter
            yield json.dumps({"StatusCode": code, "Error": None}).encode() + b"\n"

        # Headers go out at once: the docker CLI waits for them before it starts the container.
        return StreamResponse(body(), eager=True)

    async def rename(req: Request) -> Response:
        b.rename(req.params["id"], req.q("name") or "")
        return Response(204, content_type=None)

    async def top(req: Request) -> Response:
        return json_response(await b.top(req.params["id"], req.q("ps_args", "") or ""))

    async def changes(req: Request) -> Response:
        return json_response(await b.changes(req.params["id"]))

    async def attach(req: Request) -> HijackResponse:
        opts = AttachOptions(stream=req.qbool("stream"), logs=req.qbool("logs"), stdin=req.qbool("stdin"),
                             stdout=req.qbool("stdout"), stderr=req.qbool("stderr"),
                             detach_keys=req.q("detachKeys"))
        tty, run = b.attach(req.params["id"], opts)
        return HijackResponse(run, content_type=stream_content_type(req.api_version, tty))

    async def attach_ws(req: Request) -> HijackResponse:
        upgrade = handshake(req.method, req.headers, binary=version_at_least(req, "1.28"))
        # dockerd reads stdin/stdout/stderr from the query only from API 1.42 on: before, all three
        new = version_at_least(req, "1.42")
        opts = AttachOptions(stream=req.qbool("stream"), logs=req.qbool("logs"),
                             stdin=req.qbool("stdin") if new else True,
                             stdout=req.qbool("stdout") if new else True,
                             stderr=req.qbool("stderr") if new else True,
                             detach_keys=req.q("detachKeys"), multiplex=False)
        _tty, run = b.attach(req.params["id"], opts)
        return HijackResponse(run, websocket=upgrade)

    async def resize(req: Request) -> Response:
        b.resize(req.params["id"], req.qint("h", 0) or 0, req.qint("w", 0) or 0)
        return Response(200, content_type=None)

    async def pause(req: Request) -> Response:
        await b.pause(req.params["id"])
        return Response(204, content_type=None)

    async def unpause(req: Request) -> Response:
        await b.unpause(req.params["id"])
        return Response(204, content_type=None)

    async def prune(req: Request) -> Response:
        filters = parse_filters(req.q("filters"))
        check_keys(filters, {"label", "label!", "until"})
        return json_response(await b.prune(filters))

    r.add("POST", "/containers/create", create)
    r.add("GET", "/containers/json", list_)
    r.add("POST", "/containers/prune", prune)
    r.add("GET", "/containers/{id}/json", inspect)
    r.add("POST", "/containers/{id}/start", start)
    r.add("POST", "/containers/{id}/stop", stop)
    r.add("POST", "/containers/{id}/restart", restart)
    r.add("POST", "/containers/{id}/kill", kill)
    r.add("DELETE", "/containers/{id}", remove)
    r.add("DELETE", "/containers/{id}/{alias}", remove_link)
    r.add("GET", "/containers/{id}/logs", logs)
    r.add("POST", "/containers/{id}/wait", wait)
    r.add("POST", "/containers/{id}/rename", rename)
    r.add("GET", "/containers/{id}/top", top)
    r.add("GET", "/containers/{id}/changes", changes)
    r.add("POST", "/containers/{id}/attach", attach)
    r.add("GET", "/containers/{id}/attach/ws", attach_ws)
    r.add("POST", "/containers/{id}/resize", resize)
    r.add("POST", "/containers/{id}/pause", pause)
    r.add("POST", "/containers/{id}/unpause", unpause)
