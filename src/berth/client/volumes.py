"""`/volumes` endpoints, one method per route."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from berth.client.query import quote_path as _q

if TYPE_CHECKING:
    from berth.client.api import APIClient

Filters = dict[str, list[str]]


class VolumesAPI:
    def __init__(self, api: APIClient) -> None:
        self.api = api

    def list(self, filters: Filters | None = None) -> dict[str, Any]:
        return self.api.call("GET", "/volumes", params={"filters": filters or None}) or {}

    def create(self, name: str = "", driver: str = "local", driver_opts: dict[str, str] | None = None,
               labels: dict[str, str] | None = None) -> dict[str, Any]:
        body = {"Name": name, "Driver": driver, "DriverOpts": driver_opts or {}, "Labels": labels or {}}
        return self.api.call("POST", "/volumes/create", json_body=body)

    def inspect(self, name: str) -> dict[str, Any]:
        return self.api.call("GET", f"/volumes/{_q(name)}")

    def remove(self, name: str, force: bool = False) -> None:
        self.api.call("DELETE", f"/volumes/{_q(name)}", params={"force": force or None})

    def prune(self, filters: Filters | None = None) -> dict[str, Any]:
        return self.api.call("POST", "/volumes/prune", params={"filters": filters or None}) or {}
