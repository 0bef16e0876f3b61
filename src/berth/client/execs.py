"""`/exec/...` endpoints (creating an exec is `ContainersAPI.exec_create`, as on the wire)."""

from __future__ import annotations

import http.client
import socket
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from berth.client.api import APIClient


class ExecAPI:
    def __init__(self, api: APIClient) -> None:
        self.api = api

    def start_detached(self, id: str) -> None:
        self.api.call("POST", f"/exec/{id}/start", json_body={"Detach": True, "Tty": False})

    def start_attached(self, id: str, tty: bool = False) -> tuple[socket.socket, bytes]:
        """Start and hijack: the socket then carries the exec's (multiplexed unless tty) output."""
        return self.api.upgrade("POST", f"/exec/{id}/start", json_body={"Detach": False, "Tty": tty})

    def start_stream(self, id: str, tty: bool = False) -> http.client.HTTPResponse:
        """Start without hijacking, for daemons or callers that only read output."""
        return self.api.request(
            "POST", f"/exec/{id}/start", json_body={"Detach": False, "Tty": tty}, stream=True
        )

    def inspect(self, id: str) -> dict[str, Any]:
        return self.api.call("GET", f"/exec/{id}/json")
