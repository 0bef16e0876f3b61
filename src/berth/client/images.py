"""`/images/...` endpoints, one method per route."""

from __future__ import annotations

import http.client
import json
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any

from berth.client.query import Repeated
from berth.client.query import quote_path as _q

if TYPE_CHECKING:
    from berth.client.api import APIClient


Filters = dict[str, list[str]]
Objects = list[dict[str, Any]]


class ImagesAPI:
    def __init__(self, api: APIClient) -> None:
        self.api = api

    def list(self, all: bool = False, filters: Filters | None = None, digests: bool = False) -> Objects:
        params = {"all": all or None, "filters": filters or None, "digests": digests or None}
        return self.api.call("GET", "/images/json", params=params) or []

    def inspect(self, name: str) -> dict[str, Any]:
        return self.api.call("GET", f"/images/{_q(name)}/json")

    def history(self, name: str) -> Objects:
        return self.api.call("GET", f"/images/{_q(name)}/history") or []

    def remove(self, name: str, force: bool = False, noprune: bool = False) -> Objects:
        params = {"force": force or None, "noprune": noprune or None}
        return self.api.call("DELETE", f"/images/{_q(name)}", params=params) or []

    def prune(self, filters: Filters | None = None) -> dict[str, Any]:
        return self.api.call("POST", "/images/prune", params={"filters": filters or None}) or {}

    def tag(self, name: str, repo: str, tag: str | None = None) -> None:
        self.api.call("POST", f"/images/{_q(name)}/tag", params={"repo": repo, "tag": tag})

    def get(self, names: Sequence[str]) -> http.client.HTTPResponse:
        """A tar stream of the images (`docker save`)."""
        return self.api.request("GET", "/images/get", params={"names": Repeated(names)}, stream=True)

    def load(self, tarball: IO[bytes] | bytes, quiet: bool = False) -> http.client.HTTPResponse:
        """Returns the JSON-lines progress stream; a failed load may only show up as an `error` line."""
        return self.api.request(
            "POST",
            "/images/load",
            params={"quiet": quiet},
            data=tarball,
            headers={"Content-Type": "application/x-tar"},
            stream=True,
        )

    def build(
        self,
        context: IO[bytes] | bytes,
        tags: Sequence[str] = (),
        dockerfile: str | None = None,
        build_args: dict[str, str] | None = None,
        target: str | None = None,
        nocache: bool = False,
        quiet: bool = False,
        labels: dict[str, str] | None = None,
    ) -> http.client.HTTPResponse:
        """`POST /build` (the legacy builder): the context tar is the body; JSON-lines progress."""
        params = {
            "t": Repeated(tags) if tags else None,
            "dockerfile": dockerfile,
            "buildargs": json.dumps(build_args) if build_args else None,
            "target": target,
            "nocache": nocache,
            "q": quiet,
            "labels": json.dumps(labels) if labels else None,
            "rm": True,
        }
        return self.api.request("POST", "/build", params=params, data=context,
                                headers={"Content-Type": "application/x-tar"}, stream=True)

    def create_from_src(
        self,
        src: str,
        tarball: IO[bytes] | bytes | None = None,
        repo: str | None = None,
        tag: str | None = None,
        message: str | None = None,
        changes: Sequence[str] | None = None,
        platform: str | None = None,
    ) -> http.client.HTTPResponse:
        """`POST /images/create?fromSrc=` (import). `src` is `-` when the tarball is the body, else a URL."""
        params = {
            "fromSrc": src,
            "repo": repo,
            "tag": tag,
            "message": message,
            "platform": platform,
            "changes": Repeated(changes) if changes else None,
        }
        return self.api.request(
            "POST",
            "/images/create",
            params=params,
            data=tarball if tarball is not None else b"",
            headers={"Content-Type": "application/x-tar"},
            stream=True,
        )
