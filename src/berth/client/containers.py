"""`/containers/...` endpoints, one method per route; arguments are the wire's query parameters."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Sequence
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
        details: bool = False,
    ) -> http.client.HTTPResponse:
        params = {
            "stdout": stdout,
            "stderr": stderr,
            "follow": follow or None,
            "since": since,
            "until": until,
            "timestamps": timestamps or None,
            "tail": tail,
            "details": details or None,
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

    # --- filesystem: diff, commit, export, archive (cp) -------------------------------------------

    def changes(self, id: str) -> Objects:
        return self.api.call("GET", f"/containers/{_q(id)}/changes") or []

    def commit(
        self,
        container: str,
        repo: str | None = None,
        tag: str | None = None,
        comment: str | None = None,
        author: str | None = None,
        pause: bool = True,
        changes: Sequence[str] | None = None,
        config: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        from berth.client.query import Repeated

        params = {"container": container, "repo": repo, "tag": tag, "comment": comment, "author": author,
                  "pause": pause, "changes": Repeated(changes) if changes else None}
        return self.api.call("POST", "/commit", params=params, json_body=config or {})

    def export(self, id: str) -> http.client.HTTPResponse:
        return self.api.request("GET", f"/containers/{_q(id)}/export", stream=True)

    def stat_path(self, id: str, path: str) -> dict[str, Any]:
        """`HEAD .../archive`: the path's stat (name, size, mode, mtime, linkTarget)."""
        resp = self.api.request("HEAD", f"/containers/{_q(id)}/archive", params={"path": path})
        resp.read()
        return _path_stat(resp)

    def get_archive(self, id: str, path: str) -> tuple[http.client.HTTPResponse, dict[str, Any]]:
        """A tar stream of `path` and the path's stat."""
        resp = self.api.request("GET", f"/containers/{_q(id)}/archive", params={"path": path}, stream=True)
        return resp, _path_stat(resp)

    def put_archive(self, id: str, path: str, data: Any, no_overwrite_dir_non_dir: bool = False,
                    copy_uid_gid: bool = False) -> None:
        params = {"path": path, "noOverwriteDirNonDir": no_overwrite_dir_non_dir or None,
                  "copyUIDGID": copy_uid_gid or None}
        resp = self.api.request("PUT", f"/containers/{_q(id)}/archive", params=params, data=data,
                                headers={"Content-Type": "application/x-tar"})
        resp.read()

    # --- resources: stats, update, pause --------------------------------------------------------

    def stats(self, id: str, one_shot: bool = False) -> dict[str, Any]:
        params = {"stream": False, "one-shot": one_shot or None}
        return self.api.call("GET", f"/containers/{_q(id)}/stats", params=params)

    def update(self, id: str, config: dict[str, Any]) -> dict[str, Any]:
        return self.api.call("POST", f"/containers/{_q(id)}/update", json_body=config) or {}

    def pause(self, id: str) -> None:
        self.api.call("POST", f"/containers/{_q(id)}/pause")

    def unpause(self, id: str) -> None:
        self.api.call("POST", f"/containers/{_q(id)}/unpause")


def _path_stat(resp: http.client.HTTPResponse) -> dict[str, Any]:
    import base64
    import json

    raw = resp.getheader("X-Docker-Container-Path-Stat") or ""
    try:
        return json.loads(base64.b64decode(raw)) if raw else {}
    except ValueError:
        return {}
