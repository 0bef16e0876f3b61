"""Containers on networks: addresses (kept from the first start until removal or disconnect),
and endpoints (veths, published ports, the resolver), which exist only while the container runs.

`prepare` and its `finish` at start, `detach` at exit, `release` at removal, `connect` and
`disconnect` for `network connect/disconnect`. Driver calls block: they run in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Any

from berth.common.errors import Forbidden, NotFound
from berth.network import netns
from berth.network.model import Endpoint, NetworkDriver, PortBinding, mac_for_ip
from berth.network.ports import PortAllocated
from berth.runtime import etcfiles

from .model import Container
from .network_dns import ContainerNames
from .network_links import LegacyLinks
from .network_state import PREDEFINED, Network, NetworkState
from .network_views import (
    apply_endpoint_config,
    dns_names,
    endpoint_addresses,
    endpoint_view,
    host_port_range,
    mac_opt,
    net_id,
    port_key,
    ports_view,
)

if TYPE_CHECKING:
    from berth.network.dns import Sockets

    from .overlay import OverlayService

log = logging.getLogger("berth.networks")


@dataclass
class Attachment:
    """What a start needs from the networks: the netns path (or None) and the container's IPs;
    whether its resolv.conf names the built-in DNS; legacy links' /etc/hosts lines (names, ip) and
    environment variables."""

    netns_path: str | None
    ips: list[str]
    embedded_dns: bool = False
    link_hosts: list[tuple[str, str]] = field(default_factory=list)
    link_env: list[str] = field(default_factory=list)

class NetworkAttachments:
    def __init__(self, state: NetworkState, names: ContainerNames, links: LegacyLinks) -> None:
        self.state = state
        self.names = names
        self.links = links

    def _bridged(self, c: Container, strict: bool = False) -> list[tuple[str, Network]]:
        """The container's bridge networks; `strict` (a start): a network removed meanwhile is an
        error, as dockerd's "network ... not found"."""
        out = []
        for key in c.networks:
            nid = net_id(c, key)
            n = self.state.nets.get(nid) or self.state.by_name(key)
            if n is None and strict and key not in PREDEFINED:
                raise NotFound(f"network {key} not found")
            if n is not None and n.driver in ("bridge", "overlay"):
                out.append((key, n))
        return out

    def _allocation(self, c: Container, n: Network) -> tuple[IPv4Address, IPv6Address | None]:
        """The container's addresses on `n`: kept from an earlier start, else new ones."""
        for rec in self.state.endpoint_rows(c.id):
            if rec["network_id"] == n.id:
                return IPv4Address(rec["ip"]), IPv6Address(rec["ip6"]) if rec.get("ip6") else None
        ep = c.networks.get(n.name) or {}
        wanted = ((ep.get("IPAMConfig") or {}).get("IPv4Address")) or None
        wanted6 = ((ep.get("IPAMConfig") or {}).get("IPv6Address")) or None
        if n.driver == "overlay" and self.state.overlay is not None:  # cluster-wide, in the store
            ip = self.state.overlay.allocate(n.id, c.id, wanted)
            self.state.save_ep({"container_id": c.id, "network_id": n.id, "ip": str(ip), "ip6": None, "endpoint": None})
            return ip, None
        ip = self.state.ipam.allocate(n.id, wanted)
        try:
            ip6 = self.state.ipam.allocate6(n.id, wanted6)
        except BaseException:
            self.state.ipam.release(n.id, ip)
            raise
        self.state.save_ep({"container_id": c.id, "network_id": n.id, "ip": str(ip),
                       "ip6": str(ip6) if ip6 else None, "endpoint": None})
        self.state.save_ipam()
        return ip, ip6

    async def _allocation_async(self, c: Container, n: Network) -> tuple[IPv4Address, IPv6Address | None]:
        """`_allocation`, off the event loop for an overlay network (its addresses are in the store)."""
        if n.driver == "overlay":
            return await asyncio.to_thread(self._allocation, c, n)
        return self._allocation(c, n)

    def port_bindings(self, c: Container) -> tuple[PortBinding, ...]:
        hc = c.host_config
        out: list[PortBinding] = []
        seen: set[tuple[int, str]] = set()
        for key, binds in (hc.get("PortBindings") or {}).items():
            port, proto = port_key(key)
            for b in binds or [{}]:
                b = b or {}
                lo, hi = host_port_range(str(b.get("HostPort") or ""))
                out.append(PortBinding(port, proto, b.get("HostIp") or "0.0.0.0", lo, hi))
                seen.add((port, proto))
        if hc.get("PublishAllPorts"):
            for key in c.config.get("ExposedPorts") or {}:
                port, proto = port_key(key)
                if (port, proto) not in seen:
                    out.append(PortBinding(port, proto, "0.0.0.0", 0))
        return tuple(out)

    async def attach(self, c: Container) -> Attachment:
        """Before the runtime creates the container: its netns, veths and published ports.
        All or nothing: on error whatever was done is undone."""
        att, finish = await self.prepare(c)
        if finish is not None:
            await finish()
        return att

    async def prepare(self, c: Container) -> tuple[Attachment, Callable[[], Awaitable[None]] | None]:
        """Split `attach`: the netns and the addresses now (the runtime's spec names them), and a
        `finish` that wires veths, ports and the resolver, which may run while the runtime creates
        the container but must be done before its process starts. All or nothing: when `finish`
        fails it undoes what it did, and the netns."""
        mode = c.host_config.get("NetworkMode") or "default"
        if mode.startswith("container:"):
            return Attachment(None, []), None
        nets = self._bridged(c, strict=True)
        if not nets:
            return Attachment(None, []), None
        ports = self.port_bindings(c)
        link_hosts, link_env = self.links.hosts_and_env(c, nets)
        both = [await self._allocation_async(c, n) for _, n in nets]
        ips = [ip for ip, _ in both]
        ip6s = [ip6 for _, ip6 in both]
        # docker's rule: the built-in DNS for a container on any user-defined network
        with_dns = any(not n.predefined for _, n in nets)

        def make_netns() -> str:
            self.state.driver_now()
            netns.delete(os.path.join(self.state.netns_dir, c.id))  # a leftover of a crash
            return netns.create(self.state.netns_dir, c.id)

        def connect_all(path: str) -> list[Endpoint]:
            drv = self.state.driver_now()
            done: list[Endpoint] = []
            try:
                for i, ((key, _n), ip, ip6) in enumerate(zip(nets, ips, ip6s, strict=True)):
                    done.append(self._linker(_n, drv).connect(
                        c.id, _n.id, path, f"eth{i}", ip, ports if i == 0 else (), default_route=i == 0,
                        mac=mac_opt(c.networks.get(key), ip), ip6=ip6))
            except BaseException:
                for ep in done:
                    drv.disconnect(ep, delete_link=False)
                raise
            return done

        path = os.path.join(self.state.netns_dir, c.id)
        await asyncio.to_thread(make_netns)
        own = [str(ip) for ip in ips] + [str(ip6) for ip6 in ip6s if ip6]  # /etc/hosts: IPv4 first
        att = Attachment(path, own, with_dns, link_hosts, link_env)
        return att, lambda: self._finish_attach(c, nets, ports, ips, with_dns, path, connect_all)

    async def _finish_attach(self, c: Container, nets: list[tuple[str, Network]], ports: Any, ips: list[Any],
                             with_dns: bool, path: str,
                             connect_all: Callable[[str], list[Endpoint]]) -> None:
        socks: Sockets | None = None
        connected: list[Endpoint] = []
        try:
            if with_dns:  # the resolver's sockets and rule are made while the veths are
                from berth.network.dns import open_sockets

                got_eps, got_socks = await asyncio.gather(asyncio.to_thread(connect_all, path),
                                                          asyncio.to_thread(open_sockets, path),
                                                          return_exceptions=True)
                if not isinstance(got_eps, BaseException):
                    connected = got_eps
                if not isinstance(got_socks, BaseException):
                    socks = got_socks
                for got in (got_eps, got_socks):
                    if isinstance(got, BaseException):
                        raise got
                assert socks is not None
                await self.names.server().serve(c.id, socks)
                eps = connected
            else:
                eps = await asyncio.to_thread(connect_all, path)
        except BaseException as e:
            if socks is not None:
                self.names.server().stop(c.id)
                socks.close()

            def undo() -> None:
                for ep in connected:
                    self.state.driver_now().disconnect(ep, delete_link=False)
                netns.delete(path)

            await asyncio.to_thread(undo)
            if isinstance(e, PortAllocated):
                raise PortAllocated(f"driver failed programming external connectivity on endpoint {c.name} "
                                    f"({c.id[:12]}): {e.message}") from None
            raise
        for (key, n), ep in zip(nets, eps, strict=True):
            self.state.save_ep({"container_id": c.id, "network_id": n.id, "ip": str(ep.ip),
                           "ip6": str(ep.ip6) if ep.ip6 else None, "endpoint": ep.to_dict()})
            view = c.networks.get(key) or endpoint_view(n.id)
            view.update(endpoint_addresses(self.state.ipam, n, ep))
            if not n.predefined:
                view["DNSNames"] = dns_names(c, view)
            c.networks[key] = view
            self.state.events.publish("network", "connect", n.id, {"name": n.name, "type": n.driver, "container": c.id})
        c.ports = ports_view(c, eps[0].ports if eps else ())
        if any(not n.predefined for _, n in nets):
            self.names.live[c.id] = c
        await self._publish_overlay(c, [(key, n) for key, n in nets if n.driver == "overlay"])
        self.links.update_parents(c)

    def _linker(self, n: Network, drv: NetworkDriver) -> NetworkDriver | OverlayService:
        """Who wires a container into `n`: the overlay service for overlay networks."""
        return self.state.overlay if n.driver == "overlay" and self.state.overlay is not None else drv

    async def _publish_overlay(self, c: Container, nets: list[tuple[str, Network]]) -> None:
        """The container's overlay endpoints into the store (the other engines program them and
        their DNS answers them); before its process starts."""
        overlay = self.state.overlay
        if overlay is None or not nets:
            return

        def publish() -> None:
            for key, n in nets:
                overlay.publish(c, n, c.networks[key])

        await asyncio.to_thread(publish)

    async def detach(self, c: Container) -> None:
        """After the container exited: its endpoints and netns go; its addresses stay reserved."""
        self.names.live.pop(c.id, None)
        self.names.stop(c.id)  # its sockets hold the netns alive
        if self.state.overlay is not None:
            await asyncio.to_thread(self.state.overlay.withdraw, c.id)
        recs = [r for r in self.state.endpoint_rows(c.id) if r.get("endpoint")]
        path = os.path.join(self.state.netns_dir, c.id)
        if not recs and not os.path.exists(path):
            return

        def disconnect_all() -> None:
            drv = self.state.driver_now() if recs else None
            for r in recs:
                if drv is not None:
                    drv.disconnect(Endpoint.from_dict(r["endpoint"]), delete_link=False)
            netns.delete(path)

        await asyncio.to_thread(disconnect_all)
        for r in recs:
            r["endpoint"] = None
            self.state.save_ep(r)
            n = self.state.nets.get(r["network_id"])
            if n is not None:
                self.state.events.publish("network", "disconnect", n.id,
                                    {"name": n.name, "type": n.driver, "container": c.id})
        for view in c.networks.values():
            auto = view.get("IPAddress") and view.get("MacAddress") == mac_for_ip(IPv4Address(view["IPAddress"]))
            view.update(EndpointID="", Gateway="", IPAddress="", IPPrefixLen=0, IPv6Gateway="",
                        GlobalIPv6Address="", GlobalIPv6PrefixLen=0)
            if auto:  # a configured MAC (--mac-address, connect --mac-address) stays for the next start
                view["MacAddress"] = ""
        c.ports = {}

    def release(self, c: Container) -> None:
        """At removal: the container's addresses go back to the pools."""
        for r in self.state.endpoint_rows(c.id):
            self._release_row(r)
        self.state.delete_endpoints(c.id)

    async def connect(self, n: Network, c: Container, cfg: dict[str, Any]) -> None:
        """`network connect`: a running container gets the link now, a stopped one at its start."""
        mode = c.host_config.get("NetworkMode") or "default"
        if mode in ("host", "none") or mode.startswith("container:") or n.driver not in ("bridge", "overlay"):
            raise Forbidden("container cannot be disconnected from host network or connected to host "
                            "network" if "host" in (mode, n.name) else
                            f"container {c.name} is in network mode {mode}: it cannot join other networks")
        if n.name in c.networks:
            raise Forbidden(f"endpoint with name {c.name} already exists in network {n.name}")
        ep_view = endpoint_view(n.id)
        apply_endpoint_config(ep_view, cfg or {}, n)
        c.networks[n.name] = ep_view
        if c.running:
            try:
                ip, ip6 = await self._allocation_async(c, n)
                path = os.path.join(self.state.netns_dir, c.id)
                ifname = f"eth{len(c.networks) - 1}"

                def link() -> Endpoint:
                    return self._linker(n, self.state.driver_now()).connect(
                        c.id, n.id, path, ifname, ip, (), default_route=False, mac=mac_opt(ep_view, ip), ip6=ip6)

                ep = await asyncio.to_thread(link)
            except BaseException:
                del c.networks[n.name]
                self._forget_allocation(c, n)
                raise
            self.state.save_ep({"container_id": c.id, "network_id": n.id, "ip": str(ep.ip),
                           "ip6": str(ep.ip6) if ep.ip6 else None, "endpoint": ep.to_dict()})
            ep_view.update(endpoint_addresses(self.state.ipam, n, ep))
            if not n.predefined:
                ep_view["DNSNames"] = dns_names(c, ep_view)
                self.names.live[c.id] = c  # its names resolve on `n` from now on
                if not self.names.has_dns(c.id):
                    await self._start_resolver(c, path)
                await self._publish_overlay(c, [(n.name, n)] if n.driver == "overlay" else [])
            else:
                self.links.update_parents(c)
        self.state.events.publish("network", "connect", n.id, {"name": n.name, "type": n.driver, "container": c.id})

    async def _start_resolver(self, c: Container, path: str) -> None:
        """A running container's first user-defined network: the built-in DNS starts for it and
        its resolv.conf names it from now on, as dockerd rebuilds the file then. The file is
        rewritten in place: it is bind-mounted into the container, which would keep a renamed
        file's old inode."""
        from berth.network.dns import open_sockets

        socks = await asyncio.to_thread(open_sockets, path)
        await self.names.server().serve(c.id, socks)
        if self.state.container_dir is None:
            return
        hc = c.host_config  # --dns servers are the resolver's upstreams, as at a start on a user network
        text = etcfiles.embedded_resolv_conf(etcfiles.read_host_resolv_conf(), hc.get("DnsSearch") or (),
                                             hc.get("DnsOptions") or ())
        try:
            with open(os.path.join(self.state.container_dir(c), "resolv.conf"), "r+", encoding="utf-8") as f:
                f.write(text)
                f.truncate()
        except OSError as e:
            log.warning("resolv.conf of %s not rewritten: %s", c.id[:12], e)

    def _forget_allocation(self, c: Container, n: Network) -> None:
        for r in self.state.endpoint_rows(c.id):
            if r["network_id"] == n.id:
                self._release_row(r)
                self.state.del_ep(c.id, n.id)
                self.state.save_ipam()

    def _release_row(self, r: dict[str, Any]) -> None:
        if self.state.overlay is not None and r["network_id"] not in self.state.ipam.networks:  # an overlay's: in the store
            self.state.overlay.release(r["network_id"], IPv4Address(r["ip"]))
            return
        self.state.ipam.release(r["network_id"], IPv4Address(r["ip"]))
        if r.get("ip6"):
            self.state.ipam.release6(r["network_id"], IPv6Address(r["ip6"]))

    async def disconnect(self, n: Network, c: Container) -> None:
        key = next((k for k in c.networks if k == n.name or net_id(c, k) == n.id), None)
        if key is None:
            raise Forbidden(f"container {c.id} is not connected to network {n.name}")
        if n.driver not in ("bridge", "overlay"):
            raise Forbidden("container cannot be disconnected from host network or connected to host network")
        if n.driver == "overlay" and self.state.overlay is not None:
            await asyncio.to_thread(self.state.overlay.withdraw, c.id, n.id)
        rec = next((r for r in self.state.endpoint_rows(c.id) if r["network_id"] == n.id), None)
        if rec and rec.get("endpoint"):
            ep = Endpoint.from_dict(rec["endpoint"])
            await asyncio.to_thread(lambda: self.state.driver_now().disconnect(ep))
        self._forget_allocation(c, n)
        del c.networks[key]
        if c.id in self.names.live and not any(self.state.user_net(v) for v in c.networks.values()):
            del self.names.live[c.id]
        self.state.events.publish("network", "disconnect", n.id, {"name": n.name, "type": n.driver, "container": c.id})
