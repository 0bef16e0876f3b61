"""System endpoints: `/_ping`, `/version`, `/info`, `/events`."""

from __future__ import annotations

import http.client
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from berth.client.api import APIClient


class SystemAPI:
    def __init__(self, api: APIClient) -> None:
        self.api = api

    def ping(self) -> dict[str, str]:
        """The unversioned ping; returns its headers (API-Version, OSType, ...), lower-cased."""
        resp = self.api.request("GET", "/_ping", versioned=False)
        resp.read()
        return {k.lower(): v for k, v in resp.getheaders()}

    def version(self) -> dict[str, Any]:
        return self.api.call("GET", "/version")

    def info(self) -> dict[str, Any]:
        return self.api.call("GET", "/info")

    def events(
        self, since: str | None = None, until: str | None = None, filters: dict[str, list[str]] | None = None
    ) -> http.client.HTTPResponse:
        """The JSON-lines event stream; it ends only at `until` (or when the caller closes it)."""
        params = {"since": since, "until": until, "filters": filters or None}
        return self.api.request("GET", "/events", params=params, stream=True)
