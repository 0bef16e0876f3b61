"""Where the daemon listens and how to open an HTTP connection to it.

Owns host-URL parsing (`unix://`, `tcp://`, `http://`, `ssh://`) and the AF_UNIX and ssh
HTTPConnections. Knows nothing about the Engine API itself.
"""

from __future__ import annotations

import http.client
import socket
import subprocess
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


class SSHHTTPConnection(http.client.HTTPConnection):
    """An HTTPConnection over `ssh HOST docker system dial-stdio`, as the docker CLI does for ssh://:
    the ssh client (the user's own, with their keys and config) talks to a socketpair."""

    def __init__(self, argv: tuple[str, ...], timeout: float | None = None) -> None:
        super().__init__("localhost", timeout=timeout)
        self.argv = argv
        self._proc: subprocess.Popen[bytes] | None = None

    def connect(self) -> None:
        ours, theirs = socket.socketpair()
        try:
            self._proc = subprocess.Popen(self.argv, stdin=theirs.fileno(), stdout=theirs.fileno(),
                                          start_new_session=True)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.settimeout(self.timeout)
        self.sock = ours

    def close(self) -> None:
        super().close()  # ssh reads EOF, the remote dial-stdio half-closes, the daemon hangs up
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:  # a stream the daemon keeps open (events)
                proc.kill()
                proc.wait()


@dataclass(frozen=True)
class Endpoint:
    """A parsed daemon address: a unix socket path, a TCP host and port, or an ssh command."""

    url: str
    socket_path: str | None = None
    tcp_host: str | None = None
    tcp_port: int = DEFAULT_TCP_PORT
    ssh_argv: tuple[str, ...] | None = None

    def connection(self, timeout: float | None) -> http.client.HTTPConnection:
        if self.ssh_argv is not None:
            return SSHHTTPConnection(self.ssh_argv, timeout=timeout)
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
    if scheme == "ssh":
        return Endpoint(url=url, ssh_argv=ssh_dial_argv(url))
    raise ValueError(
        f"unsupported host scheme {scheme!r} in {url!r} (berth speaks unix://, tcp://, http:// and ssh://)"
    )


def ssh_dial_argv(url: str) -> tuple[str, ...]:
    """The command the docker CLI runs for `ssh://[user@]host[:port][/socket]` (docker 28 spells it
    so): the remote `docker system dial-stdio`, given the socket when the URL has a path."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"invalid host {url!r}: no host name after ssh://")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"invalid port in host {url!r}") from None
    argv = ["ssh", "-o", "ConnectTimeout=30", "-T"]
    if parts.username:
        argv += ["-l", parts.username]
    if port:
        argv += ["-p", str(port)]
    argv += ["--", parts.hostname, "docker"]
    if parts.path and parts.path != "/":
        argv += ["--host", f"unix://{parts.path}"]
    return (*argv, "system", "dial-stdio")


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
