"""The low-level Engine API client: one HTTP request per method, paths and parameters as on the wire.

Owns version negotiation, query encoding, error decoding and the `Upgrade: tcp` hijack used by
attach and exec. Per-resource endpoint methods live in `containers`, `images`, `execs` and `system`,
reachable as attributes of APIClient. Never imports asyncio: the CLI's start-up time depends on it.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Iterable, Mapping
from typing import IO, Any

from berth.client.containers import ContainersAPI
from berth.client.errors import ClientError, DaemonUnreachable
from berth.client.execs import ExecAPI
from berth.client.images import ImagesAPI
from berth.client.networks import NetworksAPI
from berth.client.query import Params, encode_params
from berth.client.system import SystemAPI
from berth.client.transport import Endpoint, parse_host, resolve_host
from berth.client.volumes import VolumesAPI

CLIENT_MAX_API = "1.45"
# The oldest version the daemon may negotiate down to before we give up pretending.
CLIENT_MIN_API = "1.24"

Body = bytes | IO[bytes] | Iterable[bytes] | None


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def negotiate_version(server: str | None, client_max: str = CLIENT_MAX_API) -> str:
    """min(server, client max), as the docker CLI does; an old daemon without the header gets 1.24."""
    if not server:
        return CLIENT_MIN_API
    try:
        return server if _version_tuple(server) < _version_tuple(client_max) else client_max
    except ValueError:
        return client_max


class APIClient:
    """Talks to one daemon. Cheap to create: nothing is sent until the first request."""

    def __init__(
        self, host: str | None = None, version: str | None = None, timeout: float | None = 120.0
    ) -> None:
        self.host = resolve_host(host, os.environ)
        self.endpoint: Endpoint = parse_host(self.host)
        self.timeout = timeout
        self._version = version
        self.containers = ContainersAPI(self)
        self.images = ImagesAPI(self)
        self.execs = ExecAPI(self)
        self.system = SystemAPI(self)
        self.volumes = VolumesAPI(self)
        self.networks = NetworksAPI(self)

    # --- version -------------------------------------------------------------------------------

    @property
    def api_version(self) -> str:
        if self._version is None:
            resp = self.request("GET", "/_ping", versioned=False)
            resp.read()
            self._version = negotiate_version(resp.getheader("API-Version"))
        return self._version

    # --- plumbing ------------------------------------------------------------------------------

    def url(self, path: str, params: Params = None, versioned: bool = True) -> str:
        query = encode_params(params)
        prefix = f"/v{self.api_version}" if versioned else ""
        return f"{prefix}{path}?{query}" if query else f"{prefix}{path}"

    def _open(self, timeout: float | None) -> http.client.HTTPConnection:
        conn = self.endpoint.connection(timeout)
        try:
            conn.connect()
        except OSError as exc:
            conn.close()
            raise DaemonUnreachable(self.host, str(exc)) from exc
        return conn

    def send(
        self,
        method: str,
        path: str,
        *,
        params: Params = None,
        json_body: Any = None,
        data: Body = None,
        headers: Mapping[str, str] | None = None,
        versioned: bool = True,
        stream: bool = False,
    ) -> tuple[http.client.HTTPConnection, str]:
        """Send a request without reading the response; returns the connection to read it from.

        Split from `request` so a caller can register (e.g. `wait`) before acting, and read later.
        """
        url = self.url(path, params, versioned)
        hdrs = dict(headers or {})
        body: Body = data
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        elif method in ("POST", "PUT") and data is None:
            body = b""
        conn = self._open(None if stream else self.timeout)
        try:
            # Streams of unknown length (stdin) go out chunked; http.client does this for file objects.
            conn.request(method, url, body=body, headers=hdrs, encode_chunked=_needs_chunking(body, hdrs))
        except OSError as exc:
            conn.close()
            raise DaemonUnreachable(self.host, str(exc)) from exc
        return conn, url

    def receive(self, conn: http.client.HTTPConnection) -> http.client.HTTPResponse:
        """Read a response's head and raise ClientError on non-2xx (the body is consumed then)."""
        try:
            resp = conn.getresponse()
        except OSError as exc:
            conn.close()
            raise DaemonUnreachable(self.host, str(exc)) from exc
        if resp.status >= 400 or resp.status < 200:
            raw = resp.read()
            conn.close()
            raise ClientError(resp.status, error_message(raw, resp.status))
        return resp

    def request(self, method: str, path: str, **kwargs: Any) -> http.client.HTTPResponse:
        """Send and return the open response; the caller reads (or streams) its body."""
        conn, _ = self.send(method, path, **kwargs)
        return self.receive(conn)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send and decode a JSON reply (None for an empty body, e.g. 204)."""
        resp = self.request(method, path, **kwargs)
        raw = resp.read()
        resp.close()
        if not raw.strip():
            return None
        ctype = resp.getheader("Content-Type", "")
        if "json" not in ctype and not raw.lstrip().startswith((b"{", b"[")):
            return raw.decode(errors="replace")
        return json.loads(raw)

    def upgrade(
        self, method: str, path: str, *, params: Params = None, json_body: Any = None
    ) -> tuple[socket.socket, bytes]:
        """Hijack a connection as attach/exec-start do: send `Upgrade: tcp`, expect 101.

        Returns the raw socket and any bytes already read past the response head. A daemon that
        answers 200 instead (no hijack support) is accepted too: its body is the stream.
        """
        url = self.url(path, params)
        conn = self._open(None)
        hdrs = {"Upgrade": "tcp", "Connection": "Upgrade"}
        body = b""
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs["Content-Type"] = "application/json"
        try:
            conn.request(method, url, body=body, headers=hdrs)
        except OSError as exc:
            conn.close()
            raise DaemonUnreachable(self.host, str(exc)) from exc
        sock = conn.sock
        assert sock is not None
        # Read the head ourselves: http.client would buffer (and hide) the first stream bytes.
        status, head_headers, rest = _read_head(sock)
        if status >= 400:
            length = int(head_headers.get("content-length", "0") or 0)
            while len(rest) < length:
                more = sock.recv(65536)
                if not more:
                    break
                rest += more
            sock.close()
            raise ClientError(status, error_message(rest, status))
        if status == 200 and head_headers.get("transfer-encoding", "").lower() == "chunked":
            raise ClientError(status, "daemon answered attach with a chunked body; hijack unsupported")
        # Detach the socket from http.client so closing the connection object does not close it.
        conn.sock = None
        return sock, rest


def _needs_chunking(body: Body, headers: Mapping[str, str]) -> bool:
    if body is None or isinstance(body, (bytes, bytearray)):
        return False
    return not any(k.lower() == "content-length" for k in headers)


def error_message(raw: bytes, status: int) -> str:
    """The `message` of a JSON error body, else the body text, else the HTTP reason."""
    text = raw.decode(errors="replace").strip()
    try:
        decoded = json.loads(text)
    except ValueError:
        decoded = None
    if isinstance(decoded, dict) and isinstance(decoded.get("message"), str):
        return decoded["message"]
    return text or http.client.responses.get(status, f"HTTP {status}")


def _read_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ClientError(502, "connection closed before the response head")
        buf += chunk
        if len(buf) > 65536:
            raise ClientError(502, "response head too large")
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise ClientError(502, f"malformed status line {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers, rest
