"""Registry endpoints of the Engine API: pull (`/images/create?fromImage=`), push, `/auth`."""

from __future__ import annotations

import http.client
from typing import TYPE_CHECKING, Any

from berth.client.query import quote_path as _q

if TYPE_CHECKING:
    from berth.client.api import APIClient


def pull(api: APIClient, image: str, tag: str | None = None, platform: str | None = None,
         registry_auth: str | None = None) -> http.client.HTTPResponse:
    """The JSON-lines progress stream of a pull; an error after it starts is an `error` line."""
    headers = {"X-Registry-Auth": registry_auth} if registry_auth else {}
    return api.request("POST", "/images/create", params={"fromImage": image, "tag": tag, "platform": platform},
                       headers=headers, stream=True)


def push(api: APIClient, name: str, tag: str | None = None,
         registry_auth: str | None = None) -> http.client.HTTPResponse:
    # dockerd requires the header on push, even empty (docker sends base64 of `{}`)
    headers = {"X-Registry-Auth": registry_auth or "e30="}
    return api.request("POST", f"/images/{_q(name)}/push", params={"tag": tag}, headers=headers, stream=True)


def login(api: APIClient, username: str, password: str, server: str) -> dict[str, Any]:
    body = {"username": username, "password": password, "serveraddress": server}
    return api.call("POST", "/auth", json_body=body) or {}
