"""IP address management: subnets for networks out of address pools, addresses for containers.

Pure logic: the daemon passes the host's routes in (`host_routes()` reads them) and persists
`Ipam.to_dict()`. Choices:
- Networks without `--subnet` get a /24 out of 10.210.0.0/16 (256 networks), the first free one
  that overlaps no other network, no host route and none of docker's (172.17.0.0/16 ..
  172.31.0.0/16, 192.168.0.0/16) or podman's (10.88.0.0/16) usual ranges. A freed subnet is
  handed out again.
- The gateway is the subnet's first host unless `--gateway` says otherwise.
- Container addresses are handed out next-fit from `--ip-range` (or the subnet), as docker does:
  a freed address is reused once the cursor wraps, so a restarted container usually gets a new
  address and stale ARP/DNS entries do not point at somebody else.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from berth.common.errors import Conflict, InvalidParameter, SystemError_

DEFAULT_POOLS: tuple[tuple[IPv4Network, int], ...] = ((IPv4Network("10.210.0.0/16"), 24),)
FOREIGN_RANGES: tuple[IPv4Network, ...] = (
    *(IPv4Network(f"172.{n}.0.0/16") for n in range(17, 32)),  # docker's bridge pools
    IPv4Network("192.168.0.0/16"),  # docker's second default pool
    IPv4Network("10.88.0.0/16"),  # podman's default network
)


class PoolExhausted(SystemError_):
    """No subnet or no address left; the message says which pool."""


@dataclass
class NetworkAddresses:
    """One network's address space: persisted with the network."""

    subnet: IPv4Network
    gateway: IPv4Address
    ip_range: IPv4Network
    user_subnet: bool = False  # docker only accepts a fixed --ip on networks with a user subnet
    allocated: set[int] = field(default_factory=set)  # offsets into the subnet (gateway included)
    cursor: int = 0  # offset of the last address handed out

    def _bounds(self) -> tuple[int, int]:
        base = int(self.subnet.network_address)
        lo = int(self.ip_range.network_address) - base
        hi = int(self.ip_range.broadcast_address) - base
        # Never the subnet's network or broadcast address (a /31 or /32 has neither to spare).
        if self.subnet.prefixlen < 31:
            lo, hi = max(lo, 1), min(hi, self.subnet.num_addresses - 2)
        return lo, hi

    def allocate(self, ip: IPv4Address | None = None) -> IPv4Address:
        base = int(self.subnet.network_address)
        if ip is not None:
            if not self.user_subnet:
                raise InvalidParameter("user specified IP address is supported only when connecting to "
                                       "networks with user configured subnets")
            if ip not in self.subnet:
                raise InvalidParameter(f"invalid address {ip}: it does not belong to subnet {self.subnet}")
            off = int(ip) - base
            if off in self.allocated:
                raise Conflict(f"Address already in use: {ip}")
            self.allocated.add(off)
            return ip
        lo, hi = self._bounds()
        span = hi - lo + 1
        start = self.cursor + 1 if lo <= self.cursor < hi else lo
        for i in range(span):
            off = lo + (start - lo + i) % span
            if off not in self.allocated:
                self.allocated.add(off)
                self.cursor = off
                return IPv4Address(base + off)
        raise PoolExhausted(f"no available IPv4 addresses on this network's address pools: "
                            f"{self.ip_range} is exhausted")

    def release(self, ip: IPv4Address) -> None:
        self.allocated.discard(int(ip) - int(self.subnet.network_address))

    def in_use(self, ip: IPv4Address) -> bool:
        return ip in self.subnet and int(ip) - int(self.subnet.network_address) in self.allocated

    def to_dict(self) -> dict[str, Any]:
        return {"subnet": str(self.subnet), "gateway": str(self.gateway), "ip_range": str(self.ip_range),
                "user_subnet": self.user_subnet, "allocated": sorted(self.allocated), "cursor": self.cursor}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NetworkAddresses:
        return cls(IPv4Network(d["subnet"]), IPv4Address(d["gateway"]), IPv4Network(d["ip_range"]),
                   bool(d.get("user_subnet", False)), set(d.get("allocated", [])), int(d.get("cursor", 0)))


def _parse_net(value: str, what: str) -> IPv4Network:
    try:
        return IPv4Network(value, strict=False)
    except ValueError as e:
        raise InvalidParameter(f"invalid {what} {value!r}: {e}") from None


class Ipam:
    """Every network's addresses, keyed by network id. Not thread-safe: the daemon serialises."""

    def __init__(self, pools: Iterable[tuple[IPv4Network, int]] = DEFAULT_POOLS,
                 avoid: Iterable[IPv4Network] = FOREIGN_RANGES) -> None:
        self.pools = list(pools)
        self.avoid = list(avoid)
        self.networks: dict[str, NetworkAddresses] = {}

    def _overlaps_network(self, net: IPv4Network, exclude: str = "") -> str | None:
        for nid, na in self.networks.items():
            if nid != exclude and na.subnet.overlaps(net):
                return nid
        return None

    def _pick_subnet(self, host_routes: Iterable[IPv4Network]) -> IPv4Network:
        taken = [r for r in host_routes if r.prefixlen > 0]  # the default route overlaps everything
        for pool, size in self.pools:
            for cand in pool.subnets(new_prefix=size):
                if self._overlaps_network(cand) is not None:
                    continue
                if any(cand.overlaps(t) for t in taken) or any(cand.overlaps(a) for a in self.avoid):
                    continue
                return cand
        pools = ", ".join(str(p) for p, _ in self.pools)
        raise PoolExhausted(f"all predefined address pools have been fully subnetted ({pools})")

    def add_network(self, network_id: str, subnet: str | None = None, gateway: str | None = None,
                    ip_range: str | None = None, host_routes: Iterable[IPv4Network] = ()) -> NetworkAddresses:
        """Reserve the network's subnet (given or picked from the pools) and its gateway address."""
        if network_id in self.networks:
            raise Conflict(f"network {network_id} already has addresses")
        if subnet:
            net = _parse_net(subnet, "subnet")
            other = self._overlaps_network(net)
            if other is not None:
                raise Conflict(f"invalid pool request: Pool overlaps with other one on this address space "
                               f"({net} and network {other[:12]})")
        elif gateway or ip_range:
            raise InvalidParameter("--gateway and --ip-range need --subnet")
        else:
            net = self._pick_subnet(host_routes)
        rng = _parse_net(ip_range, "ip-range") if ip_range else net
        if not rng.subnet_of(net):
            raise InvalidParameter(f"invalid ip-range {rng}: it is not inside subnet {net}")
        gw = IPv4Address(gateway) if gateway else IPv4Address(int(net.network_address) + 1)
        if gw not in net:
            raise InvalidParameter(f"invalid gateway {gw}: it does not belong to subnet {net}")
        na = NetworkAddresses(net, gw, rng, user_subnet=bool(subnet))
        na.allocated.add(int(gw) - int(net.network_address))
        self.networks[network_id] = na
        return na

    def remove_network(self, network_id: str) -> None:
        self.networks.pop(network_id, None)

    def allocate(self, network_id: str, ip: str | None = None) -> IPv4Address:
        return self._get(network_id).allocate(IPv4Address(ip) if ip else None)

    def release(self, network_id: str, ip: IPv4Address) -> None:
        na = self.networks.get(network_id)
        if na is not None:
            na.release(ip)

    def _get(self, network_id: str) -> NetworkAddresses:
        try:
            return self.networks[network_id]
        except KeyError:
            raise InvalidParameter(f"network {network_id} has no addresses") from None

    def to_dict(self) -> dict[str, Any]:
        return {nid: na.to_dict() for nid, na in self.networks.items()}

    def load(self, state: dict[str, Any]) -> None:
        self.networks = {nid: NetworkAddresses.from_dict(d) for nid, d in state.items()}


def host_routes(path: str = "/proc/net/route") -> list[IPv4Network]:
    """The host's IPv4 routes (all tables of the main namespace), without netlink: cheap to call."""
    out: list[IPv4Network] = []
    try:
        with open(path) as f:
            next(f, None)
            for line in f:
                cols = line.split()
                if len(cols) < 8:
                    continue
                dest = socket.inet_ntoa(struct.pack("<I", int(cols[1], 16)))
                mask = socket.inet_ntoa(struct.pack("<I", int(cols[7], 16)))
                out.append(IPv4Network(f"{dest}/{mask}", strict=False))
    except OSError:
        pass
    return out
