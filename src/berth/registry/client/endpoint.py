"""Where a registry named in an image reference answers, and whether plain HTTP is allowed.

As dockerd: `docker.io` is `registry-1.docker.io` over TLS; loopback registries (127.0.0.0/8,
`localhost`, `::1`) and the daemon's `--insecure-registry` entries (host[:port] or CIDR) are
spoken to over plain HTTP.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"


@dataclass(frozen=True)
class Endpoint:
    name: str  # the registry as references name it: docker.io, 127.0.0.1:5000
    host: str  # host[:port] to connect to
    secure: bool  # TLS (verified) or plain HTTP

    @property
    def base(self) -> str:
        return f"{'https' if self.secure else 'http'}://{self.host}"


def normalize_server(address: str) -> str:
    """A `serveraddress` (`https://index.docker.io/v1/`, `http://h:5000`, `h:5000`) as a registry name."""
    addr = address.strip()
    for prefix in ("https://", "http://"):
        if addr.startswith(prefix):
            addr = addr[len(prefix):]
    addr = addr.split("/", 1)[0]
    if addr in ("", "index.docker.io", "registry-1.docker.io", "docker.io"):
        return DOCKER_HUB
    return addr


def _host_only(name: str) -> str:
    if name.startswith("["):
        return name[1:].split("]", 1)[0]
    return name.rsplit(":", 1)[0] if name.count(":") == 1 else name


def is_insecure(name: str, insecure: Iterable[str] = ()) -> bool:
    host = _host_only(name)
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None and ip.is_loopback:
        return True
    for entry in insecure:
        if entry in (name, host):
            return True
        if ip is not None and "/" in entry:
            try:
                if ip in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    return False


def resolve(name: str, insecure: Iterable[str] = ()) -> Endpoint:
    name = normalize_server(name)
    if name == DOCKER_HUB:
        return Endpoint(name, DOCKER_HUB_API, True)
    return Endpoint(name, name, not is_insecure(name, insecure))
