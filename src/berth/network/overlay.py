"""Overlay networks on one host: a VXLAN device and a bridge per network, programmed with peers.

Each host of an overlay network has, in its own namespace, a bridge (no address: the overlay
has no way out, containers reach the outside through another network) enslaving a VXLAN device
(the network's VNI, the host's VTEP address, UDP 4789, no learning) and the containers' veths.
Nothing is learnt from the wire: whoever knows the endpoints (the daemon, from the cluster
store) hands the full list of remote ones to `set_peers`, which programs the VXLAN device's
forwarding database: one all-zeros entry per remote host (broadcast, e.g. ARP, is copied to every
host of the network) and one entry per remote container MAC (unicast goes to its host only).
MTU 1450 inside: VXLAN adds 50 bytes to a 1500-byte underlay.

Blocking netlink calls (pyroute2): call from a worker thread, as for the bridge driver.
"""

from __future__ import annotations

import hashlib
import socket
import threading
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from berth.common.errors import NotFound
from berth.network import links
from berth.network.model import Endpoint, mac_for_ip

OVERLAY_MTU = 1450
VXLAN_PORT = 4789
FLOOD_MAC = "00:00:00:00:00:00"
EEXIST = 17
NUD_PERMANENT = 0x80
NTF_SELF = 0x02


@dataclass(frozen=True)
class OverlayConfig:
    """One overlay network as every host realises it (the cluster store holds it)."""

    id: str
    vni: int
    subnet: IPv4Network
    gateway: IPv4Address  # reserved in IPAM as docker does; no host holds it

    @property
    def bridge(self) -> str:
        return f"ov-{self.id[:12]}"

    @property
    def vxlan(self) -> str:
        return f"vx-{self.id[:12]}"


@dataclass(frozen=True)
class Peer:
    """A container on another host: its address and MAC on the overlay, and that host's VTEP."""

    ip: IPv4Address
    mac: str
    vtep: IPv4Address


def overlay_ifname(container_id: str, network_id: str) -> str:
    """The host end of an overlay endpoint's veth (15 characters at most)."""
    return "vo" + hashlib.sha256(f"{container_id}/{network_id}".encode()).hexdigest()[:11]


class OverlayDriver:
    """The overlay networks of this host, whose VTEP address is `vtep`. `ipr` is the netlink
    socket to work through (one in another namespace for test hosts); by default the daemon's."""

    def __init__(self, vtep: IPv4Address, ipr: IPRoute | None = None) -> None:
        self.vtep = vtep
        self._ipr = ipr or links.host_ipr()
        self._lock = threading.Lock()
        self._nets: dict[str, OverlayConfig] = {}

    def close(self) -> None:
        self._ipr.close()

    def create_network(self, net: OverlayConfig) -> None:
        """The bridge and VXLAN device of `net`, up; idempotent."""
        with self._lock:
            ipr = self._ipr
            if links._index(ipr, net.bridge) is None:
                try:
                    ipr.link("add", ifname=net.bridge, kind="bridge", mtu=OVERLAY_MTU)
                except NetlinkError as e:
                    if e.code != EEXIST:
                        raise
            br = links._index(ipr, net.bridge)
            assert br is not None
            if links._index(ipr, net.vxlan) is None:
                try:
                    ipr.link("add", ifname=net.vxlan, kind="vxlan", vxlan_id=net.vni, vxlan_local=str(self.vtep),
                             vxlan_port=VXLAN_PORT, vxlan_learning=0, mtu=OVERLAY_MTU)
                except NetlinkError as e:
                    if e.code != EEXIST:
                        raise
            vx = links._index(ipr, net.vxlan)
            assert vx is not None
            ipr.link("set", index=vx, master=br, state="up")
            ipr.link("set", index=br, state="up")
            self._nets[net.id] = net

    def delete_network(self, network_id: str, net: OverlayConfig | None = None) -> None:
        with self._lock:
            net = self._nets.pop(network_id, None) or net
            if net is None:
                return
            links.delete_link(self._ipr, net.vxlan)
            links.delete_link(self._ipr, net.bridge)

    def connect(self, container_id: str, network_id: str, netns: str, ifname: str, ip: IPv4Address,
                mac: str | None = None) -> Endpoint:
        """A veth from the network's bridge into the container's namespace; no default route."""
        with self._lock:
            net = self._nets.get(network_id)
            if net is None:
                raise NotFound(f"network {network_id} not found")
            ep = Endpoint(container_id, network_id, netns, ifname, ip, net.subnet.prefixlen, mac or mac_for_ip(ip),
                          overlay_ifname(container_id, network_id))
            links.add_veth(self._ipr, bridge=net.bridge, host_if=ep.host_ifname, ns_path=netns, ifname=ifname,
                           mac=ep.mac, ip=ip, prefixlen=ep.prefixlen, gateway=None, mtu=OVERLAY_MTU)
            return ep

    def networks(self) -> list[str]:
        """The ids of the networks realised on this host (by `create_network` since start)."""
        with self._lock:
            return list(self._nets)

    def sweep(self, keep: set[str]) -> list[str]:
        """Delete the bridges and VXLAN devices of overlay networks not in `keep` (ids): those
        removed from the cluster while this host's daemon was down. Returns the names deleted."""
        short = {nid[:12] for nid in keep}
        gone = []
        with self._lock:
            for link in self._ipr.get_links():
                name = link.get_attr("IFLA_IFNAME") or ""
                if name[:3] in ("ov-", "vx-") and len(name) == 15 and name[3:] not in short:
                    links.delete_link(self._ipr, name)
                    gone.append(name)
            self._nets = {k: v for k, v in self._nets.items() if k[:12] in short}
        return gone

    def disconnect(self, ep: Endpoint, delete_link: bool = True) -> None:
        if delete_link:
            with self._lock:
                links.delete_link(self._ipr, ep.host_ifname)

    def set_peers(self, network_id: str, peers: list[Peer]) -> None:
        """Make the VXLAN device's forwarding entries exactly those `peers` need (ours excluded)."""
        with self._lock:
            net = self._nets.get(network_id)
            if net is None:
                raise NotFound(f"network {network_id} not found")
            vx = links._index(self._ipr, net.vxlan)
            if vx is None:
                raise NotFound(f"network {network_id} has no VXLAN device on this host")
            remote = [p for p in peers if p.vtep != self.vtep]
            want = {(FLOOD_MAC, str(v)) for v in {p.vtep for p in remote}} | {(p.mac, str(p.vtep)) for p in remote}
            have = self._fdb(vx)
            for mac, dst in have - want:
                self._ipr.fdb("del", ifindex=vx, lladdr=mac, dst=dst, flags=NTF_SELF)
            for mac, dst in sorted(want - have):
                # all-zeros entries stack (one per host: "append"); a MAC has one host ("replace")
                self._ipr.fdb("append" if mac == FLOOD_MAC else "replace", ifindex=vx, lladdr=mac, dst=dst,
                              state=NUD_PERMANENT, flags=NTF_SELF)

    def _fdb(self, vx: int) -> set[tuple[str, str]]:
        """The device's own (static, remote) entries: MAC and destination VTEP."""
        out = set()
        for entry in self._ipr.fdb("dump", ifindex=vx):
            if entry.get("ifindex") != vx:
                continue
            dst = entry.get_attr("NDA_DST")
            mac = entry.get_attr("NDA_LLADDR")
            if dst and mac:
                out.add((mac, dst))
        return out


def vtep_of(ipr: IPRoute, address: str) -> IPv4Address:
    """The VTEP address named by `--cluster-advertise`: an address, or an interface whose first
    IPv4 address is taken."""
    try:
        return IPv4Address(address)
    except ValueError:
        pass
    idx = links._index(ipr, address)
    if idx is None:
        raise NotFound(f"no address or interface {address!r} to advertise")
    for a in ipr.get_addr(index=idx, family=socket.AF_INET):
        return IPv4Address(a.get_attr("IFA_ADDRESS"))
    raise NotFound(f"interface {address} has no IPv4 address")
