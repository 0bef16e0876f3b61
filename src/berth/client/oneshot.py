"""One GET of a JSON document over a unix socket, without http.client.

For the CLI's hottest read-only paths (`compose ps`): importing http.client (with email and ssl)
costs about 25 ms, more than the request itself. Unix sockets only, one request per connection
(`Connection: close`), unversioned paths (the daemon's own API version); any other host raises
`Unsupported`, and the caller uses APIClient instead.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

from berth.client.errors import ClientError, DaemonUnreachable

# The same default as transport.DEFAULT_HOST, which cannot be imported here without http.client.
DEFAULT_HOST = "unix:///run/berth/berth.sock"


class Unsupported(Exception):
    """The host is not a unix socket: use APIClient."""


def get_json(host: str | None, path_and_query: str, timeout: float = 60) -> Any:
    url = host or os.environ.get("DOCKER_HOST") or DEFAULT_HOST
    if url.startswith("/"):
        sock_path = url
    elif url.startswith("unix://") and len(url) > len("unix://"):
        sock_path = url[len("unix://"):]
    else:
        raise Unsupported(url)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(sock_path)
            sock.sendall(f"GET {path_and_query} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except OSError as exc:
            raise DaemonUnreachable(url, str(exc)) from exc
    status, headers, body = _parse(b"".join(chunks))
    if status >= 300:
        try:
            message = json.loads(body).get("message") or ""
        except (ValueError, AttributeError):
            message = ""
        raise ClientError(status, message or body.decode(errors="replace").strip() or f"HTTP {status}")
    return json.loads(body) if body.strip() else None


def _parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, sep, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if not sep or len(parts) < 2 or not parts[1].isdigit():
        raise ClientError(502, f"malformed response from the daemon: {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = _dechunk(body)
    elif "content-length" in headers:
        body = body[: int(headers["content-length"])]
    return int(parts[1]), headers, body


def _dechunk(data: bytes) -> bytes:
    out: list[bytes] = []
    pos = 0
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            raise ClientError(502, "truncated chunked response from the daemon")
        size = int(data[pos:eol].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(data[eol + 2: eol + 2 + size])
        pos = eol + 2 + size + 2
