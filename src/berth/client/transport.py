"""Where the daemon listens and how to open an HTTP connection to it.

Owns host-URL parsing (`unix://`, `tcp://`, `http://`) and the AF_UNIX HTTPConnection.
Knows nothing about the Engine API itself.
"""

from __future__ import annotations

import http.client
import socket
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_HOST = "unix:///run/berth/berth.sock"
DEFAULT_TCP_PORT = 2375


class UnixHTTPConnection(http.client.HTTPConnection):
    """An HTTPConnection whose transport is a unix stream socket instead of TCP."""

    def __init__(self, socket_path: str, timeout: float | None = None) -> None:
        # The host name only ends up in the Host header; the daemon ignores it.
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


@dataclass(frozen=True)
class Endpoint:
    """A parsed daemon address: either a unix socket path or a TCP host and port."""

    url: str
    socket_path: str | None = None
    tcp_host: str | None = None
    tcp_port: int = DEFAULT_TCP_PORT

    def connection(self, timeout: float | None) -> http.client.HTTPConnection:
        if self.socket_path is not None:
            return UnixHTTPConnection(self.socket_path, timeout=timeout)
        assert self.tcp_host is not None
        return http.client.HTTPConnection(self.tcp_host, self.tcp_port, timeout=timeout)


def resolve_host(explicit: str | None, environ: Mapping[str, str]) -> str:
    """`-H` wins over DOCKER_HOST, which wins over berth's default socket."""
    if explicit:
        return explicit
    return environ.get("DOCKER_HOST") or DEFAULT_HOST


def parse_host(url: str) -> Endpoint:
    """Parse a docker-style host URL; raises ValueError for schemes berth cannot speak."""
    if url.startswith("/"):
        # docker accepts a bare path as shorthand for unix://
        return Endpoint(url=f"unix://{url}", socket_path=url)
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"invalid host {url!r}: expected unix://PATH or tcp://HOST:PORT")
    if scheme == "unix":
        if not rest:
            raise ValueError(f"invalid host {url!r}: empty socket path")
        return Endpoint(url=url, socket_path=rest)
    if scheme in ("tcp", "http"):
        hostport = rest.split("/", 1)[0]
        host, port = _split_host_port(hostport)
        return Endpoint(url=url, tcp_host=host, tcp_port=port)
    raise ValueError(
        f"unsupported host scheme {scheme!r} in {url!r} (berth speaks unix://, tcp:// and http://)"
    )


def _split_host_port(hostport: str) -> tuple[str, int]:
    if hostport.startswith("["):  # [::1]:2375
        host, _, tail = hostport[1:].partition("]")
        port = tail[1:] if tail.startswith(":") else ""
    elif hostport.count(":") == 1:
        host, port = hostport.split(":")
    else:
        host, port = hostport, ""
    if not host:
        host = "127.0.0.1"
    if not port:
        return host, DEFAULT_TCP_PORT
    if not port.isdigit():
        raise ValueError(f"invalid port {port!r} in host {hostport!r}")
    return host, int(port)
