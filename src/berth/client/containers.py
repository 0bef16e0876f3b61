"""`/containers/...` endpoints, one method per route; arguments are the wire's query parameters."""

from __future__ import annotations

import http.client
import socket
from typing import TYPE_CHECKING, Any

from berth.client.query import quote_path as _q

if TYPE_CHECKING:
    from berth.client.api import APIClient


Filters = dict[str, list[str]]
Objects = list[dict[str, Any]]


class ContainersAPI:
    def __init__(self, api: APIClient) -> None:
        self.api = api

    def list(
        self,
        all: bool = False,
        limit: int | None = None,
        size: bool = False,
        filters: Filters | None = None,
    ) -> Objects:
        params = {"all": all or None, "limit": limit, "size": size or None, "filters": filters or None}
        return self.api.call("GET", "/containers/json", params=params) or []

    def create(
        self, config: dict[str, Any], name: str | None = None, platform: str | None = None
    ) -> dict[str, Any]:
        params = {"name": name, "platform": platform}
        return self.api.call("POST", "/containers/create", params=params, json_body=config)

    def inspect(self, id: str, size: bool = False) -> dict[str, Any]:
        return self.api.call("GET", f"/containers/{_q(id)}/json", params={"size": size or None})

    def start(self, id: str) -> None:
        self.api.call("POST", f"/containers/{_q(id)}/start")

    def stop(self, id: str, t: int | None = None, signal: str | None = None) -> None:
        self.api.call("POST", f"/containers/{_q(id)}/stop", params={"t": t, "signal": signal})

    def restart(self, id: str, t: int | None = None, signal: str | None = None) -> None:
        self.api.call("POST", f"/containers/{_q(id)}/restart", params={"t": t, "signal": signal})

    def kill(self, id: str, signal: str | None = None) -> None:
        self.api.call("POST", f"/containers/{_q(id)}/kill", params={"signal": signal})

    def remove(self, id: str, force: bool = False, v: bool = False, link: bool = False) -> None:
        params = {"force": force or None, "v": v or None, "link": link or None}
        self.api.call("DELETE", f"/containers/{_q(id)}", params=params)

    def rename(self, id: str, name: str) -> None:
        self.api.call("POST", f"/containers/{_q(id)}/rename", params={"name": name})

    def top(self, id: str, ps_args: str | None = None) -> dict[str, Any]:
        return self.api.call("GET", f"/containers/{_q(id)}/top", params={"ps_args": ps_args})

    def wait(self, id: str, condition: str | None = None) -> dict[str, Any]:
        return self.api.call(
            "POST", f"/containers/{_q(id)}/wait", params={"condition": condition}, stream=True
        )

    def wait_send(self, id: str, condition: str | None = None) -> http.client.HTTPConnection:
        """Register a wait without reading its answer: `run` must wait before it starts the container."""
        conn, _ = self.api.send(
            "POST", f"/containers/{_q(id)}/wait", params={"condition": condition}, stream=True
        )
        return conn

    def wait_receive(self, conn: http.client.HTTPConnection) -> dict[str, Any]:
        import json

        resp = self.api.receive(conn)
        raw = resp.read()
        conn.close()
        return json.loads(raw) if raw.strip() else {}

    def logs(
        self,
        id: str,
        stdout: bool = True,
        stderr: bool = True,
        follow: bool = False,
        since: str | None = None,
        until: str | None = None,
        timestamps: bool = False,
        tail: str | None = None,
    ) -> http.client.HTTPResponse:
        params = {
            "stdout": stdout,
            "stderr": stderr,
            "follow": follow or None,
            "since": since,
            "until": until,
            "timestamps": timestamps or None,
            "tail": tail,
        }
        return self.api.request("GET", f"/containers/{_q(id)}/logs", params=params, stream=True)

    def attach(
        self,
        id: str,
        stream: bool = True,
        stdin: bool = False,
        stdout: bool = True,
        stderr: bool = True,
        logs: bool = False,
        detach_keys: str | None = None,
    ) -> tuple[socket.socket, bytes]:
        params = {
            "stream": stream,
            "stdin": stdin,
            "stdout": stdout,
            "stderr": stderr,
            "logs": logs or None,
            "detachKeys": detach_keys,
        }
        return self.api.upgrade("POST", f"/containers/{_q(id)}/attach", params=params)

    def prune(self, filters: Filters | None = None) -> dict[str, Any]:
        return self.api.call("POST", "/containers/prune", params={"filters": filters or None})

    def exec_create(self, id: str, config: dict[str, Any]) -> dict[str, Any]:
        return self.api.call("POST", f"/containers/{_q(id)}/exec", json_body=config)
