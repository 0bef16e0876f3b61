"""POST /build: the legacy builder API (`DOCKER_BUILDKIT=0 docker build`, docker-py `images.build`).

The request body is the build context as a tar (plain or compressed); the answer is docker's
JSON-lines progress stream. Errors found before the first step (a malformed Dockerfile, a bad
parameter) keep their HTTP status, as dockerd's; later ones end the stream with `errorDetail`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from berth.common.errors import InvalidParameter

from ..http.router import Router
from ..http.server import Request, Response, StreamResponse, json_response
from ..http.streams import json_progress


@dataclass
class BuildOptions:
    tags: list[str] = field(default_factory=list)
    dockerfile: str = "Dockerfile"
    build_args: dict[str, str | None] = field(default_factory=dict)
    target: str = ""
    nocache: bool = False
    rm: bool = True
    forcerm: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    cache_from: list[str] = field(default_factory=list)
    network_mode: str = ""
    extra_hosts: list[str] = field(default_factory=list)
    platform: str = ""
    quiet: bool = False


class BuildBackend(Protocol):
    def build(self, opts: BuildOptions, body: AsyncIterator[bytes]) -> AsyncIterator[dict[str, Any]]:
        """Receive the context, run the steps, yield progress messages. Raises before the first
        message for errors that deserve an HTTP status."""
        ...

    def prune_cache(self) -> dict[str, Any]:
        """Forget every cached step (`builder prune`); the images stay until pruned themselves."""
        ...


def _json_param(req: Request, name: str, kind: type) -> Any:
    value = req.qjson(name, kind())
    if not isinstance(value, kind):
        raise InvalidParameter(f"invalid value for {name}: expected a JSON {kind.__name__}")
    return value


def _extra_hosts(values: list[str]) -> list[str]:
    """`extrahosts` comes repeated (docker CLI, docker-py), comma-separated or as a JSON list."""
    out: list[str] = []
    for raw in values:
        try:
            value = json.loads(raw)
            if isinstance(value, list):
                out += [str(v) for v in value]
                continue
        except ValueError:
            pass
        out += [h for part in raw.split(",") for h in part.split() if h]
    return out


def _first(req: Request, name: str) -> str:
    """The first of a repeated parameter, as Go's FormValue: docker-py sends `dockerfile` twice
    for a Dockerfile outside the context (its name, then its contents)."""
    values = req.query.get(name) or []
    return values[0] if values else ""


def options(req: Request) -> BuildOptions:
    build_args = _json_param(req, "buildargs", dict)
    labels = _json_param(req, "labels", dict)
    cache_from = _json_param(req, "cachefrom", list)
    return BuildOptions(
        tags=[t for t in req.query.get("t") or [] if t],
        dockerfile=_first(req, "dockerfile") or "Dockerfile",
        build_args={str(k): (None if v is None else str(v)) for k, v in build_args.items()},
        target=req.q("target") or "",
        nocache=req.qbool("nocache"),
        rm=req.qbool("rm", True),
        forcerm=req.qbool("forcerm"),
        labels={str(k): str(v) for k, v in labels.items()},
        cache_from=[str(c) for c in cache_from],
        network_mode=req.q("networkmode") or "",
        extra_hosts=_extra_hosts(req.query.get("extrahosts") or []),
        platform=_check_platform(req.q("platform") or ""),
        quiet=req.qbool("q"),
    )


def _check_platform(platform: str) -> str:
    """dockerd without experimental features builds for its own platform only."""
    if platform:
        os_, _, arch = platform.lower().partition("/")
        if os_ != "linux" or arch.split("/")[0] not in ("", "amd64", "x86_64"):
            raise InvalidParameter(f'"{platform}": unknown operating system or architecture: invalid argument')
    return platform


def register(r: Router, b: BuildBackend) -> None:
    async def build(req: Request) -> StreamResponse:
        if req.q("remote"):
            raise InvalidParameter("berth's builder takes the context in the request body; "
                                   "remote contexts (remote=...) are not supported")
        if req.qbool("squash"):
            raise InvalidParameter("squash is only supported with experimental mode")
        return StreamResponse(json_progress(b.build(options(req), req.stream())))

    async def prune(req: Request) -> Response:
        return json_response(b.prune_cache())

    r.add("POST", "/build", build)
    r.add("POST", "/build/prune", prune)
