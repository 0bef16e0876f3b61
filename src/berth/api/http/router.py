"""Routing for the Engine API: version prefixes, path parameters, version negotiation limits."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable

from berth.common.errors import BerthError, NotFound

from .server import (
    Handler,
    HijackResponse,
    Request,
    Response,
    StreamResponse,
    error_response,
    set_api_headers,
)

API_VERSION = "1.45"
MIN_API_VERSION = "1.24"

_VERSION_PREFIX = re.compile(r"^/v(\d+\.\d+)(/.*)$")


def _vtuple(v: str) -> tuple[int, int]:
    major, minor = v.split(".", 1)
    return int(major), int(minor)


def _compile(pattern: str) -> re.Pattern[str]:
    """'/containers/{id}/json' -> regex; '{name*}' matches across slashes (image names)."""
    out = ""
    for part in re.split(r"(\{[a-z_]+\*?\})", pattern):
        if part.startswith("{"):
            name = part.strip("{}*")
            out += f"(?P<{name}>.+)" if part.endswith("*}") else f"(?P<{name}>[^/]+)"
        else:
            out += re.escape(part)
    return re.compile(f"^{out}$")


class Router:
    def __init__(self, server_name: str) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        set_api_headers([("Api-Version", API_VERSION), ("Docker-Experimental", "false"),
                         ("Ostype", "linux"), ("Server", server_name)])

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self._routes.append((method, _compile(pattern), fn))
            return fn
        return deco

    def add(self, method: str, pattern: str, fn: Handler) -> None:
        self._routes.append((method, _compile(pattern), fn))

    async def __call__(self, req: Request) -> Response | StreamResponse | HijackResponse:
        path = req.path
        m = _VERSION_PREFIX.match(path)
        if m:
            version, path = m.group(1), m.group(2)
            if _vtuple(version) > _vtuple(API_VERSION):
                return error_response(400, f"client version {version} is too new. "
                                           f"Maximum supported API version is {API_VERSION}")
            if _vtuple(version) < _vtuple(MIN_API_VERSION):
                return error_response(400, f"client version {version} is too old. "
                                           f"Minimum supported API version is {MIN_API_VERSION}, "
                                           "please upgrade your client to a newer version")
            req.api_version = version
        else:
            req.api_version = API_VERSION
        method_mismatch = False
        for method, regex, fn in self._routes:
            pm = regex.match(path)
            if not pm:
                continue
            if method != req.method and not (method == "GET" and req.method == "HEAD"):
                method_mismatch = True
                continue
            # as gorilla/mux in dockerd: path variables are percent-decoded (docker-py quotes `@`)
            req.params = {k: urllib.parse.unquote(v) for k, v in pm.groupdict().items()}
            return await fn(req)
        if method_mismatch:
            return error_response(405, "method not allowed")
        raise NotFound(f"page not found: {req.method} {req.path}")


def version_at_least(req: Request, v: str) -> bool:
    return _vtuple(req.api_version) >= _vtuple(v)


__all__ = ["Router", "Request", "Response", "BerthError", "version_at_least", "API_VERSION", "MIN_API_VERSION"]
