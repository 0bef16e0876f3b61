"""Routing for the distribution API: `/v2/<name>/...` where a name may contain slashes.

Not the Engine API's `Router`: that one strips Docker's `/vX.Y` version prefix (which `/v2/`
would be mistaken for) and answers errors in Docker's format. Here every error becomes the
spec's JSON, and HEAD is served by the GET handler with its body dropped.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Protocol

from berth.api.http.server import FileResponse, HijackResponse, Request, Response, StreamResponse
from berth.common.errors import BerthError

from .auth import Need, need_of
from .errors import RegistryError, unsupported
from .names import check_name

log = logging.getLogger("berth.registry")

Handler = Callable[[Request], Awaitable[Response]]
Reply = Response | StreamResponse | HijackResponse
API_VERSION_HEADER = ("Docker-Distribution-API-Version", "registry/2.0")

_NAME = r"(?P<name>[^?#]+?)"


def compile_route(pattern: str) -> re.Pattern[str]:
    """'/v2/{name}/blobs/{digest}' -> regex; {name} may span slashes, other parts may not."""
    out = ""
    for part in re.split(r"(\{[a-z]+\})", pattern):
        if part == "{name}":
            out += _NAME
        elif part.startswith("{"):
            out += f"(?P<{part.strip('{}')}>[^/]+)"
        else:
            out += re.escape(part)
    return re.compile(f"^{out}$")


def error_reply(err: RegistryError) -> Response:
    return Response(err.status, err.body(), "application/json", list(err.headers))


class Authorizer(Protocol):
    async def authorize(self, req: Request, need: Need) -> str:
        """The account ('' anonymous) allowed to do what `need` says; raises 401 or 403 otherwise."""

    async def permits(self, req: Request, kind: str, name: str, action: str) -> bool:
        """Whether the already authorized request may also do `action` on another repository."""


class Router:
    def __init__(self, auth: Authorizer | None = None) -> None:
        self._routes: list[tuple[re.Pattern[str], dict[str, Handler]]] = []
        self.auth = auth

    def add(self, pattern: str, **methods: Handler) -> None:
        self._routes.append((compile_route(pattern), methods))

    async def permits(self, req: Request, kind: str, name: str, action: str) -> bool:
        return self.auth is None or await self.auth.permits(req, kind, name, action)

    async def __call__(self, req: Request) -> Reply:
        try:
            handler = self._match(req)
            need = need_of(req)
            if self.auth is not None and need is not None:
                req.params["_account"] = await self.auth.authorize(req, need)
            resp = await handler(req)
        except RegistryError as e:
            resp = error_reply(e)
        except BerthError as e:  # from the server core: a body cut short, a bad header
            log.info("%s %s: %s", req.method, req.path, e.message)
            resp = error_reply(RegistryError(e.status, "UNKNOWN", e.message))
        except Exception:  # a real fault: log it with the traceback, answer in the spec's shape
            log.exception("handler failed: %s %s", req.method, req.path)
            resp = error_reply(RegistryError(500, "UNKNOWN", "internal error"))
        resp.headers.append(API_VERSION_HEADER)
        if req.method == "HEAD":
            return _head_of(resp)
        return resp

    def _match(self, req: Request) -> Handler:
        for regex, methods in self._routes:
            m = regex.match(req.path)
            if not m:
                continue
            handler = methods.get(req.method) or (methods.get("GET") if req.method == "HEAD" else None)
            if handler is None:
                raise unsupported(f"method {req.method} not allowed on {req.path}")
            req.params = m.groupdict()
            if "name" in req.params:
                check_name(req.params["name"])
            return handler
        raise RegistryError(404, "NOT_FOUND", f"no such endpoint: {req.path}")


def _head_of(resp: Response) -> Response:
    """The same status and headers as GET, with the length the body would have had."""
    if any(k.lower() == "content-length" for k, _ in resp.headers):
        return resp
    length = resp.length if isinstance(resp, FileResponse) else len(resp.body)
    return Response(resp.status, b"", resp.content_type, [*resp.headers, ("Content-Length", str(length))])
