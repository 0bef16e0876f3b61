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
- IPv6 (`--ipv6`): a network's second address space, `NetworkAddresses6`, allocated the same way.
  Without an IPv6 `--subnet` it gets a /64 out of the ULA prefix DEFAULT_POOL6 that overlaps no
  other network and no host route (newer dockerd does the same out of its own ULA pool).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

from berth.common.errors import Conflict, InvalidParameter, SystemError_

DEFAULT_POOLS: tuple[tuple[IPv4Network, int], ...] = ((IPv4Network("10.210.0.0/16"), 24),)
FOREIGN_RANGES: tuple[IPv4Network, ...] = (
    *(IPv4Network(f"172.{n}.0.0/16") for n in range(17, 32)),  # docker's bridge pools
    IPv4Network("192.168.0.0/16"),  # docker's second default pool
    IPv4Network("10.88.0.0/16"),  # podman's default network
)


DEFAULT_POOL6 = IPv6Network("fdb7:e27a:5f00::/48")  # a fixed random ULA /48: 65536 /64 networks


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
            _claim(self.allocated, self.user_subnet, self.subnet, ip)
            return ip
        off = _next_fit(self.allocated, self.cursor, *self._bounds(), tries=1 << 32)
        if off is None:
            raise PoolExhausted(f"no available IPv4 addresses on this network's address pools: "
                                f"{self.ip_range} is exhausted")
        self.cursor = off
        return IPv4Address(base + off)

    def release(self, ip: IPv4Address) -> None:
        self.allocated.discard(int(ip) - int(self.subnet.network_address))

    def in_use(self, ip: IPv4Address) -> bool:
        return ip in self.subnet and int(ip) - int(self.subnet.network_address) in self.allocated

    def to_dict(self) -> dict[str, Any]:
        return _addresses_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NetworkAddresses:
        return cls(IPv4Network(d["subnet"]), IPv4Address(d["gateway"]), IPv4Network(d["ip_range"]),
                   bool(d.get("user_subnet", False)), set(d.get("allocated", [])), int(d.get("cursor", 0)))


def _claim(allocated: set[int], user_subnet: bool, subnet: IPv4Network | IPv6Network,
           ip: IPv4Address | IPv6Address) -> None:
    """Take a fixed address (`--ip`/`--ip6`), as docker allows it: only on a user subnet, in it, once."""
    if not user_subnet:
        raise InvalidParameter("user specified IP address is supported only when connecting to "
                               "networks with user configured subnets")
    if ip not in subnet:
        raise InvalidParameter(f"invalid address {ip}: it does not belong to subnet {subnet}")
    offset = int(ip) - int(subnet.network_address)
    if offset in allocated:
        raise Conflict(f"Address already in use: {ip}")
    allocated.add(offset)


def _addresses_dict(a: NetworkAddresses | NetworkAddresses6) -> dict[str, Any]:
    return {"subnet": str(a.subnet), "gateway": str(a.gateway), "ip_range": str(a.ip_range),
            "user_subnet": a.user_subnet, "allocated": sorted(a.allocated), "cursor": a.cursor}


def _next_fit(allocated: set[int], cursor: int, lo: int, hi: int, tries: int = 1 << 16) -> int | None:
    """The first free offset after `cursor` in [lo, hi], wrapping once, and marks it taken. At
    most `tries` probes: an IPv6 range has far more addresses than can ever be allocated."""
    span = hi - lo + 1
    start = cursor + 1 if lo <= cursor < hi else lo
    for i in range(min(span, tries)):
        off = lo + (start - lo + i) % span
        if off not in allocated:
            allocated.add(off)
            return off
    return None


@dataclass
class NetworkAddresses6:
    """A network's IPv6 space (`--ipv6`): the subnet's first address (the subnet-router anycast
    address) is never handed out; IPv6 has no broadcast address."""

    subnet: IPv6Network
    gateway: IPv6Address
    ip_range: IPv6Network
    user_subnet: bool = False
    allocated: set[int] = field(default_factory=set)
    cursor: int = 0

    def allocate(self, ip: IPv6Address | None = None) -> IPv6Address:
        base = int(self.subnet.network_address)
        if ip is not None:
            _claim(self.allocated, self.user_subnet, self.subnet, ip)
            return ip
        lo = max(int(self.ip_range.network_address) - base, 1)
        hi = int(self.ip_range.broadcast_address) - base
        off = _next_fit(self.allocated, self.cursor, lo, hi)
        if off is None:
            raise PoolExhausted(f"no available IPv6 addresses on this network's address pools: "
                                f"{self.ip_range} is exhausted")
        self.cursor = off
        return IPv6Address(base + off)

    def release(self, ip: IPv6Address) -> None:
        self.allocated.discard(int(ip) - int(self.subnet.network_address))

    def to_dict(self) -> dict[str, Any]:
        return _addresses_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NetworkAddresses6:
        return cls(IPv6Network(d["subnet"]), IPv6Address(d["gateway"]), IPv6Network(d["ip_range"]),
                   bool(d.get("user_subnet", False)), set(d.get("allocated", [])), int(d.get("cursor", 0)))


def _parse_net6(value: str, what: str) -> IPv6Network:
    try:
        return IPv6Network(value, strict=False)
    except ValueError as e:
        raise InvalidParameter(f"invalid {what} {value!r}: {e}") from None


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
        self.networks6: dict[str, NetworkAddresses6] = {}

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
        self.networks6.pop(network_id, None)

    def add_network6(self, network_id: str, subnet: str | None = None, gateway: str | None = None,
                     ip_range: str | None = None, host_routes: Iterable[IPv6Network] = ()) -> NetworkAddresses6:
        """The network's IPv6 space: given, or the first free /64 of DEFAULT_POOL6."""
        if network_id in self.networks6:
            raise Conflict(f"network {network_id} already has IPv6 addresses")
        if subnet:
            net = _parse_net6(subnet, "subnet")
            for nid, other in self.networks6.items():
                if other.subnet.overlaps(net):
                    raise Conflict(f"invalid pool request: Pool overlaps with other one on this address space "
                                   f"({net} and network {nid[:12]})")
        elif gateway or ip_range:
            raise InvalidParameter("--gateway and --ip-range need --subnet")
        else:
            taken = [r for r in host_routes if r.prefixlen > 0 and not r.is_link_local and not r.is_multicast]
            picked = next((c for c in DEFAULT_POOL6.subnets(new_prefix=64)
                           if not any(c.overlaps(o.subnet) for o in self.networks6.values())
                           and not any(c.overlaps(t) for t in taken)), None)
            if picked is None:
                raise PoolExhausted(f"all predefined IPv6 address pools have been fully subnetted ({DEFAULT_POOL6})")
            net = picked
        rng = _parse_net6(ip_range, "ip-range") if ip_range else net
        if not rng.subnet_of(net):
            raise InvalidParameter(f"invalid ip-range {rng}: it is not inside subnet {net}")
        try:
            gw = IPv6Address(gateway) if gateway else IPv6Address(int(net.network_address) + 1)
        except ValueError:
            raise InvalidParameter(f"invalid gateway {gateway!r}") from None
        if gw not in net:
            raise InvalidParameter(f"invalid gateway {gw}: it does not belong to subnet {net}")
        na = NetworkAddresses6(net, gw, rng, user_subnet=bool(subnet))
        na.allocated.add(int(gw) - int(net.network_address))
        self.networks6[network_id] = na
        return na

    def allocate6(self, network_id: str, ip: str | None = None) -> IPv6Address | None:
        """None on a network without IPv6."""
        na = self.networks6.get(network_id)
        if na is None:
            if ip:
                raise InvalidParameter("invalid IPv6 address: the network has IPv6 disabled")
            return None
        try:
            wanted = IPv6Address(ip) if ip else None
        except ValueError:
            raise InvalidParameter(f"invalid IPv6 address {ip!r}") from None
        return na.allocate(wanted)

    def release6(self, network_id: str, ip: IPv6Address) -> None:
        na = self.networks6.get(network_id)
        if na is not None:
            na.release(ip)

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
        out: dict[str, Any] = {nid: na.to_dict() for nid, na in self.networks.items()}
        if self.networks6:  # under a key no network id can be (ids are hex)
            out["_v6"] = {nid: na.to_dict() for nid, na in self.networks6.items()}
        return out

    def load(self, state: dict[str, Any]) -> None:
        self.networks = {nid: NetworkAddresses.from_dict(d) for nid, d in state.items() if nid != "_v6"}
        self.networks6 = {nid: NetworkAddresses6.from_dict(d) for nid, d in (state.get("_v6") or {}).items()}


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


def host_routes6(path: str = "/proc/net/ipv6_route") -> list[IPv6Network]:
    """The host's IPv6 routes, as `host_routes` for IPv4."""
    out: list[IPv6Network] = []
    try:
        with open(path) as f:
            for line in f:
                cols = line.split()
                if len(cols) < 2:
                    continue
                out.append(IPv6Network((int(cols[0], 16), int(cols[1], 16)), strict=False))
    except (OSError, ValueError):
        pass
    return out
