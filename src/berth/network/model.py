"""Data types shared by the bridge driver and the daemon, and the `NetworkDriver` protocol.

Everything here is plain data that the daemon can persist (`to_dict`/`from_dict`) and that the API
layer can import without pulling in pyroute2.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any, Protocol

DEFAULT_MTU = 1500


@dataclass(frozen=True)
class NetworkConfig:
    """What the driver needs to realise one bridge network (IPAM has already chosen the subnet)."""

    id: str
    bridge: str  # interface name: `berth0`, `br-<id12>` or `com.docker.network.bridge.name`
    subnet: IPv4Network
    gateway: IPv4Address
    mtu: int = DEFAULT_MTU
    internal: bool = False
    icc: bool = True  # com.docker.network.bridge.enable_icc
    masquerade: bool = True  # com.docker.network.bridge.enable_ip_masquerade
    subnet6: IPv6Network | None = None  # `--ipv6` networks only
    gateway6: IPv6Address | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "bridge": self.bridge, "subnet": str(self.subnet),
                "gateway": str(self.gateway), "mtu": self.mtu, "internal": self.internal, "icc": self.icc,
                "masquerade": self.masquerade, "subnet6": str(self.subnet6) if self.subnet6 else None,
                "gateway6": str(self.gateway6) if self.gateway6 else None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NetworkConfig:
        return cls(id=d["id"], bridge=d["bridge"], subnet=IPv4Network(d["subnet"]),
                   gateway=IPv4Address(d["gateway"]), mtu=int(d.get("mtu", DEFAULT_MTU)),
                   internal=bool(d.get("internal", False)), icc=bool(d.get("icc", True)),
                   masquerade=bool(d.get("masquerade", True)),
                   subnet6=IPv6Network(d["subnet6"]) if d.get("subnet6") else None,
                   gateway6=IPv6Address(d["gateway6"]) if d.get("gateway6") else None)


@dataclass(frozen=True)
class PortBinding:
    """One published port: host_ip:host_port -> container_port/proto. host_port 0 means "any free";
    a `host_port_end` asks for the first free port of host_port..host_port_end (docker's
    `-p 8000-8010:80`); a held binding has one port and no end."""

    container_port: int
    proto: str = "tcp"
    host_ip: str = "0.0.0.0"
    host_port: int = 0
    host_port_end: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"container_port": self.container_port, "proto": self.proto, "host_ip": self.host_ip,
                "host_port": self.host_port, **({"host_port_end": self.host_port_end} if self.host_port_end else {})}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PortBinding:
        return cls(int(d["container_port"]), d.get("proto", "tcp"), d.get("host_ip", "0.0.0.0"),
                   int(d.get("host_port", 0)), int(d.get("host_port_end", 0)))


@dataclass(frozen=True)
class Endpoint:
    """A container's attachment to one network: the veth pair and the address on it."""

    container_id: str
    network_id: str
    netns: str  # path of the container's network namespace (bind mount)
    ifname: str  # inside the netns: eth0, eth1, ...
    ip: IPv4Address
    prefixlen: int
    mac: str
    host_ifname: str
    ports: tuple[PortBinding, ...] = field(default=())  # with the host ports actually allocated
    ip6: IPv6Address | None = None  # on an `--ipv6` network
    prefixlen6: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"container_id": self.container_id, "network_id": self.network_id, "netns": self.netns,
                "ifname": self.ifname, "ip": str(self.ip), "prefixlen": self.prefixlen, "mac": self.mac,
                "host_ifname": self.host_ifname, "ports": [p.to_dict() for p in self.ports],
                "ip6": str(self.ip6) if self.ip6 else None, "prefixlen6": self.prefixlen6}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Endpoint:
        return cls(d["container_id"], d["network_id"], d["netns"], d["ifname"], IPv4Address(d["ip"]),
                   int(d["prefixlen"]), d["mac"], d["host_ifname"],
                   tuple(PortBinding.from_dict(p) for p in d.get("ports", [])),
                   IPv6Address(d["ip6"]) if d.get("ip6") else None, int(d.get("prefixlen6") or 0))


def mac_for_ip(ip: IPv4Address) -> str:
    """Docker's rule: 02:42 followed by the four bytes of the IPv4 address (locally administered)."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ip.packed)


def host_ifname(container_id: str, network_id: str) -> str:
    """The host end of an endpoint's veth, derived so a restarted daemon finds it without records.

    15 characters at most (IFNAMSIZ - 1).
    """
    return "vb" + hashlib.sha256(f"{container_id}/{network_id}".encode()).hexdigest()[:11]


def bridge_name(network_id: str, options: dict[str, str] | None = None, default: bool = False) -> str:
    """Docker's naming: the option if given, the default bridge's own name, else br-<id12>."""
    name = (options or {}).get("com.docker.network.bridge.name")
    if name:
        return name
    return "berth0" if default else f"br-{network_id[:12]}"


def parse_ip(value: str) -> IPv4Address:
    return IPv4Address(ipaddress.ip_address(value))


class NetworkDriver(Protocol):
    """Realises networks and container endpoints on the host. Blocking calls: run them in a worker
    thread (`asyncio.to_thread`), never on the event loop (pyroute2 runs its own loop).

    Lifecycle:
    - `restore(networks, endpoints)` once at daemon start, before any other call, with every network
      and every endpoint of a running container the daemon has on record: it recreates what is
      missing (bridges, rules, port reservations) and removes nothing that is still recorded. Safe
      after a `kill -9` of the daemon: rules are rewritten, never duplicated. Returns warnings for
      ports someone else took meanwhile (their rules are dropped).
    - `create_network` then any number of `connect`/`disconnect`, then `delete_network` (refused,
      by the caller, while endpoints remain). Both are idempotent.
    - `connect` returns the endpoint with its host ports allocated; the caller persists it and later
      passes the same value to `disconnect`. A host port is held from `connect` to `disconnect`;
      a clash raises `PortAllocated` with docker's message and leaves nothing behind.
    - The network namespace itself (see `netns.create`) belongs to the caller: deleting it also
      frees every veth left in it, so a stopping container is disconnected with
      `delete_link=False` (deleting a veth costs ~20-30 ms; the kernel frees it with the netns in
      the background) and `network disconnect` of a running one with the default.
    Invariant: after every network is deleted, the host keeps only berth's empty base chains.
    """

    def restore(self, networks: list[NetworkConfig], endpoints: list[Endpoint]) -> list[str]: ...

    def create_network(self, net: NetworkConfig) -> None: ...

    def delete_network(self, network_id: str) -> None: ...

    def connect(self, container_id: str, network_id: str, netns: str, ifname: str, ip: IPv4Address,
                ports: tuple[PortBinding, ...] = (), default_route: bool = True,
                mac: str | None = None, ip6: IPv6Address | None = None) -> Endpoint: ...

    def disconnect(self, ep: Endpoint, delete_link: bool = True) -> None: ...
