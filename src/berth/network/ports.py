"""Published ports: parsing docker's `-p` syntax and holding host ports while they are published.

A published port is held by a socket bound (TCP: listening) on host_ip:host_port in the daemon, as
docker's port mapper does: another process then cannot take the port, a second publication of it
fails at bind with docker's message, and `host_port` 0 gets a free port from the kernel. Packets
never reach these sockets: nat DNAT rewrites them first. The sockets die with the daemon and are
taken again by `restore` at start; the iptables rules keep forwarding meanwhile.
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket
from dataclasses import replace

from berth.common.errors import InvalidParameter, SystemError_
from berth.network.model import PortBinding


class PortAllocated(SystemError_):
    """Docker answers 500 with this message for a host port already in use."""


_SPEC = re.compile(r"^(?:(?:\[?(?P<ip>[0-9a-fA-F.:]*?)\]?:)?(?P<host>\d*(?:-\d+)?):)?"
                   r"(?P<ctr>\d+(?:-\d+)?)(?:/(?P<proto>tcp|udp|sctp))?$")


def _range(text: str, what: str) -> list[int]:
    lo, _, hi = text.partition("-")
    a, b = int(lo), int(hi or lo)
    if not (0 < a <= b <= 65535):
        raise InvalidParameter(f"invalid {what} port: {text}")
    return list(range(a, b + 1))


def parse_publish(spec: str) -> list[PortBinding]:
    """`[ip:][host[-host2]:]ctr[-ctr2][/proto]` (docker's `-p`) into one binding per port."""
    m = _SPEC.match(spec.strip())
    if not m:
        raise InvalidParameter(f"invalid port specification: {spec!r}")
    proto = m["proto"] or "tcp"
    if proto == "sctp":
        raise InvalidParameter("sctp ports are not supported")
    ctr = _range(m["ctr"], "containerPort")
    host = _range(m["host"], "hostPort") if m["host"] else [0] * len(ctr)
    ip = m["ip"] or "0.0.0.0"
    if len(host) > 1 and len(ctr) == 1:  # one port out of the host range, picked when published
        return [PortBinding(ctr[0], proto, _check_ip(ip), host[0], host[-1])]
    if len(host) != len(ctr):
        raise InvalidParameter(f"invalid ranges specified for container and host Ports: {spec!r}")
    return [PortBinding(c, proto, _check_ip(ip), h) for c, h in zip(ctr, host, strict=True)]


def _check_ip(ip: str) -> str:
    try:
        ipaddress.IPv4Address(ip)  # IPv6 host addresses: not yet
    except ValueError:
        raise InvalidParameter(f"invalid IP address in port specification: {ip}") from None
    return ip


class PortHolds:
    """The sockets that hold published host ports, keyed by (proto, host_ip, host_port)."""

    def __init__(self) -> None:
        self._socks: dict[tuple[str, str, int], socket.socket] = {}

    def take(self, b: PortBinding) -> PortBinding:
        """Hold the binding's host port (a free one if 0, the first free one of a range) and return
        the binding with it filled in."""
        if b.host_port_end:
            for port in range(b.host_port, b.host_port_end + 1):
                try:
                    return self.take(replace(b, host_port=port, host_port_end=0))
                except PortAllocated:
                    continue
            raise PortAllocated("all ports are allocated")  # dockerd's words for a full range
        kind = socket.SOCK_STREAM if b.proto == "tcp" else socket.SOCK_DGRAM
        s = socket.socket(socket.AF_INET, kind)
        try:
            # No SO_REUSEADDR: a port another socket holds must fail here, whatever that socket set.
            s.bind((b.host_ip, b.host_port))
            if kind == socket.SOCK_STREAM:
                s.listen(1)
        except OSError as e:
            s.close()
            if e.errno == errno.EADDRINUSE:
                raise PortAllocated(f"Bind for {b.host_ip}:{b.host_port} failed: port is already allocated") \
                    from None
            if e.errno == errno.EADDRNOTAVAIL:
                raise InvalidParameter(f"cannot publish on {b.host_ip}: not an address of this host") \
                    from None
            raise
        port = s.getsockname()[1]
        self._socks[(b.proto, b.host_ip, port)] = s
        return replace(b, host_port=port)

    def take_all(self, bindings: tuple[PortBinding, ...]) -> tuple[PortBinding, ...]:
        """All or nothing."""
        done: list[PortBinding] = []
        try:
            for b in bindings:
                done.append(self.take(b))
        except BaseException:
            for d in done:
                self.drop(d)
            raise
        return tuple(done)

    def holds(self, b: PortBinding) -> bool:
        return (b.proto, b.host_ip, b.host_port) in self._socks

    def drop(self, b: PortBinding) -> None:
        s = self._socks.pop((b.proto, b.host_ip, b.host_port), None)
        if s is not None:
            s.close()

    def close(self) -> None:
        for s in self._socks.values():
            s.close()
        self._socks.clear()
