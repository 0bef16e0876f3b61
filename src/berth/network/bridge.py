"""The bridge driver: `NetworkDriver` over Linux bridges, veth pairs and iptables.

Holds the networks and published ports it was told about (the daemon's records are the truth;
`restore` hands them back after a restart) and rewrites berth's iptables chains from them when
networks change; a container's published ports are only appended and deleted (a rewrite flushes
chains, which costs the kernel 10-20 ms a table). Connecting a container without published ports
touches no iptables rule at all: the per-network rules match on the bridge, so a start costs only
the netlink work.
"""

from __future__ import annotations

import threading
from ipaddress import IPv4Address, IPv6Address

from berth.common.errors import BerthError, NotFound
from berth.network import links
from berth.network.iptables import Firewall, Published, enable_forwarding
from berth.network.model import Endpoint, NetworkConfig, NetworkDriver, PortBinding, host_ifname, mac_for_ip
from berth.network.ports import PortHolds


class BridgeDriver:
    """Implements `berth.network.model.NetworkDriver`; calls are serialised by one lock."""

    def __init__(self, firewall: Firewall | None = None) -> None:
        self.firewall = firewall or Firewall()
        self._lock = threading.Lock()
        self._ipr = links.host_ipr()
        self._nets: dict[str, NetworkConfig] = {}
        self._pubs: dict[tuple[str, str], list[Published]] = {}  # (container, network) -> ports
        self._holds = PortHolds()

    def close(self) -> None:
        """Release the port holds and the netlink socket; rules and links stay (containers run on)."""
        self._holds.close()
        self._ipr.close()

    def _sync(self) -> None:
        self.firewall.apply(self._nets.values(), (p for ps in self._pubs.values() for p in ps))

    def restore(self, networks: list[NetworkConfig], endpoints: list[Endpoint]) -> list[str]:
        """Returns a warning per port that could not be held again (someone took it meanwhile):
        its rule is dropped, the rest of the container's networking keeps working."""
        warnings: list[str] = []
        with self._lock:
            enable_forwarding(ipv6=any(n.subnet6 is not None for n in networks))
            self._nets = {}
            for net in networks:
                links.ensure_bridge(self._ipr, net.bridge, net.gateway, net.subnet, net.mtu, net.gateway6, net.subnet6)
                self._nets[net.id] = net
            pubs: dict[tuple[str, str], list[Published]] = {}
            for ep in endpoints:
                owner = self._nets.get(ep.network_id)
                if owner is None or not ep.ports:
                    continue
                held: list[Published] = []
                for p in ep.ports:
                    try:
                        if not self._holds.holds(p):  # restore may run twice in one process
                            self._holds.take(p)
                        held.append(Published(owner.bridge, ep.ip, p))
                    except (BerthError, OSError) as e:  # one lost port must not stop the others
                        warnings.append(f"container {ep.container_id[:12]}: {e}")
                pubs[(ep.container_id, ep.network_id)] = held
            kept = {p.port for ps in pubs.values() for p in ps}
            for old in {p.port for ps in self._pubs.values() for p in ps} - kept:
                self._holds.drop(old)
            self._pubs = pubs
            self._sync()
        return warnings

    def create_network(self, net: NetworkConfig) -> None:
        with self._lock:
            enable_forwarding(ipv6=net.subnet6 is not None)
            links.ensure_bridge(self._ipr, net.bridge, net.gateway, net.subnet, net.mtu, net.gateway6, net.subnet6)
            self._nets[net.id] = net
            try:
                self._sync()
            except BaseException:
                del self._nets[net.id]
                links.delete_link(self._ipr, net.bridge)
                raise

    def delete_network(self, network_id: str) -> None:
        with self._lock:
            net = self._nets.pop(network_id, None)
            if net is None:
                return
            for key in [k for k in self._pubs if k[1] == network_id]:
                for p in self._pubs.pop(key):
                    self._holds.drop(p.port)
            self._sync()
            links.delete_link(self._ipr, net.bridge)

    def connect(self, container_id: str, network_id: str, netns: str, ifname: str, ip: IPv4Address,
                ports: tuple[PortBinding, ...] = (), default_route: bool = True, mac: str | None = None,
                ip6: IPv6Address | None = None) -> Endpoint:
        with self._lock:
            net = self._nets.get(network_id)
            if net is None:
                raise NotFound(f"network {network_id} not found")
            held = self._holds.take_all(ports)
            if ip6 is not None and net.subnet6 is None:
                ip6 = None  # asked on a network without IPv6: the daemon checks; never half-configure
            ep = Endpoint(container_id, network_id, netns, ifname, ip, net.subnet.prefixlen, mac or mac_for_ip(ip),
                          host_ifname(container_id, network_id), held, ip6,
                          net.subnet6.prefixlen if ip6 is not None and net.subnet6 is not None else 0)
            try:
                # Internal networks give no default route, as docker: there is no way out anyway.
                gw = net.gateway if default_route and not net.internal else None
                gw6 = net.gateway6 if gw is not None and ip6 is not None else None
                links.add_veth(self._ipr, bridge=net.bridge, host_if=ep.host_ifname, ns_path=netns,
                               ifname=ifname, mac=ep.mac, ip=ip, prefixlen=ep.prefixlen, gateway=gw,
                               mtu=net.mtu, ip6=ip6, prefixlen6=ep.prefixlen6, gateway6=gw6)
                if held:
                    pubs = [Published(net.bridge, ip, p) for p in held]
                    self.firewall.add_ports(pubs)
                    self._pubs[(container_id, network_id)] = pubs
            except BaseException:
                self._pubs.pop((container_id, network_id), None)
                for p in held:
                    self._holds.drop(p)
                links.delete_link(self._ipr, ep.host_ifname)
                raise
            return ep

    def disconnect(self, ep: Endpoint, delete_link: bool = True) -> None:
        with self._lock:
            pubs = self._pubs.pop((ep.container_id, ep.network_id), None)
            if pubs and not self.firewall.remove_ports(pubs):
                self._sync()  # someone removed a rule under us: rewrite the chains from the state
            for p in ep.ports:
                self._holds.drop(p)
            if delete_link:
                links.delete_link(self._ipr, ep.host_ifname)

    def published(self) -> list[Published]:
        with self._lock:
            return [p for ps in self._pubs.values() for p in ps]


def _conforms(d: BridgeDriver) -> NetworkDriver:
    return d  # mypy checks here that BridgeDriver implements the protocol
