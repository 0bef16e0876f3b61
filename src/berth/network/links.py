"""Netlink work through pyroute2: bridges, veth pairs, addresses and routes.

The only module that imports pyroute2 (~200 ms): the daemon reaches it through `bridge`, the CLI
and the API layer never do. pyroute2's sync `IPRoute` runs its own asyncio loop, so these
functions must be called from a worker thread, not from the daemon's event loop.
"""

from __future__ import annotations

import os
import socket
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from berth.network import netns
from berth.network.model import mac_for_ip

ENOENT, EEXIST, ENODEV = 2, 17, 19
IFA_F_NODAD = 0x02  # an IPv6 address usable at once: duplicate detection would hold it ~1 s


def host_ipr() -> IPRoute:
    """A control socket in the daemon's namespace, without multicast groups (nothing to listen to)."""
    return IPRoute(groups=0)


def _ns_ipr(path: str) -> IPRoute:
    """A control socket living in the namespace at `path`: a netlink socket stays in the namespace it
    was created in, so a thread creates it there and the calling thread keeps its own namespace
    (pyroute2's own `netns=` forks a child for this)."""
    sock = netns.run_in(path, lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 0))
    return IPRoute(fileno=sock.detach(), groups=0)


def _index(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


def _sysctl(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def ensure_bridge(ipr: IPRoute, name: str, gateway: IPv4Address, subnet: IPv4Network, mtu: int,
                  gateway6: IPv6Address | None = None, subnet6: IPv6Network | None = None) -> None:
    """The bridge up, with the gateway address(es) and MTU; idempotent (kept as is when it exists)."""
    idx = _index(ipr, name)
    if idx is None:
        try:
            # A fixed MAC (docker's rule for the gateway IP): without one the bridge takes the lowest
            # of its ports' MACs and changes it as ports come and go, leaving the gateway's MAC
            # stale in the containers' ARP caches.
            ipr.link("add", ifname=name, kind="bridge", mtu=mtu, address=mac_for_ip(gateway))
        except NetlinkError as e:
            if e.code != EEXIST:
                raise
        idx = _index(ipr, name)
        assert idx is not None
    else:
        ipr.link("set", index=idx, mtu=mtu)
    addrs = ipr.get_addr(index=idx, family=socket.AF_INET)
    have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in addrs}
    if (str(gateway), subnet.prefixlen) not in have:
        ipr.addr("add", index=idx, address=str(gateway), prefixlen=subnet.prefixlen)
    if gateway6 is not None and subnet6 is not None:
        _sysctl(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "0")
        have6 = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=idx, family=socket.AF_INET6)}
        if (str(gateway6), subnet6.prefixlen) not in have6:
            ipr.addr("add", index=idx, address=str(gateway6), prefixlen=subnet6.prefixlen, flags=IFA_F_NODAD)
    ipr.link("set", index=idx, state="up")
    # DNAT of 127.0.0.1:port to a container routes a loopback-sourced packet out of the bridge: the
    # kernel drops it as martian unless route_localnet is set there (nat then masquerades it).
    _sysctl(f"/proc/sys/net/ipv4/conf/{name}/route_localnet", "1")


def delete_link(ipr: IPRoute, name: str) -> None:
    """Delete a link by name if it exists (a veth takes its peer with it)."""
    idx = _index(ipr, name)
    if idx is None:
        return
    try:
        ipr.link("del", index=idx)
    except NetlinkError as e:
        if e.code not in (ENODEV, ENOENT):
            raise


def add_veth(ipr: IPRoute, *, bridge: str, host_if: str, ns_path: str, ifname: str, mac: str,
             ip: IPv4Address, prefixlen: int, gateway: IPv4Address | None, mtu: int,
             ip6: IPv6Address | None = None, prefixlen6: int = 0, gateway6: IPv6Address | None = None) -> None:
    """A veth pair: `host_if` enslaved to the bridge, its peer created straight inside the netns as
    `ifname` with the MAC, the address(es) and (if `gateway`/`gateway6`) the default route(s)."""
    br = _index(ipr, bridge)
    if br is None:
        raise FileNotFoundError(f"bridge {bridge} does not exist")
    delete_link(ipr, host_if)  # left by a crash between connect and its record
    fd = os.open(ns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        ipr.link("add", ifname=host_if, kind="veth", master=br, mtu=mtu,
                 peer={"ifname": ifname, "net_ns_fd": fd, "address": mac, "mtu": mtu})
    finally:
        os.close(fd)
    try:
        idx = _index(ipr, host_if)
        assert idx is not None
        # Hairpin lets a container reach itself through a published port (DNAT back out of the
        # port the packet came in by), as docker does without its userland proxy.
        ipr.brport("set", index=idx, mode=1)  # IFLA_BRPORT_MODE: hairpin
        ipr.link("set", index=idx, state="up")
        with _ns_ipr(ns_path) as nsr:
            (inner,) = nsr.link_lookup(ifname=ifname)
            nsr.addr("add", index=inner, address=str(ip), prefixlen=prefixlen)
            if ip6 is not None:
                nsr.addr("add", index=inner, address=str(ip6), prefixlen=prefixlen6, flags=IFA_F_NODAD)
            nsr.link("set", index=inner, state="up")
            if gateway is not None:
                nsr.route("add", dst="0.0.0.0/0", gateway=str(gateway))
            if gateway6 is not None:
                nsr.route("add", dst="::/0", gateway=str(gateway6), family=socket.AF_INET6)
    except BaseException:
        delete_link(ipr, host_if)
        raise
