"""`/networks` endpoints, one method per route."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from berth.client.query import quote_path as _q

if TYPE_CHECKING:
    from berth.client.api import APIClient

Filters = dict[str, list[str]]


class NetworksAPI:
    def __init__(self, api: APIClient) -> None:
        self.api = api

    def list(self, filters: Filters | None = None) -> list[dict[str, Any]]:
        return self.api.call("GET", "/networks", params={"filters": filters or None}) or []

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.api.call("POST", "/networks/create", json_body=body)

    def inspect(self, ref: str) -> dict[str, Any]:
        return self.api.call("GET", f"/networks/{_q(ref)}")

    def remove(self, ref: str) -> None:
        self.api.call("DELETE", f"/networks/{_q(ref)}")

    def prune(self, filters: Filters | None = None) -> dict[str, Any]:
        return self.api.call("POST", "/networks/prune", params={"filters": filters or None}) or {}

    def connect(self, ref: str, container: str, endpoint_config: dict[str, Any] | None = None) -> None:
        self.api.call("POST", f"/networks/{_q(ref)}/connect",
                      json_body={"Container": container, "EndpointConfig": endpoint_config or {}})

    def disconnect(self, ref: str, container: str, force: bool = False) -> None:
        self.api.call("POST", f"/networks/{_q(ref)}/disconnect", json_body={"Container": container, "Force": force})
