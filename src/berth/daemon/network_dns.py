"""The built-in DNS's view of containers: which running containers are on user-defined networks
(the table), and the answers to its questions (`Names`: resolve, reverse, upstreams).

The resolver itself (berth.network.dns, dnspython) is loaded on first use.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING

from berth.common.errors import BerthError
from berth.network import netns

from .model import Container
from .network_links import parse_link
from .network_state import NetworkState
from .network_views import dns_names

if TYPE_CHECKING:
    from berth.network.dns import DnsServer

log = logging.getLogger("berth.networks")


class ContainerNames:
    def __init__(self, state: NetworkState) -> None:
        self.state = state
        # Running containers with an address on a user-defined network: the built-in DNS's table.
        self.live: dict[str, Container] = {}
        self._dns: DnsServer | None = None

    def server(self) -> DnsServer:
        if self._dns is None:
            from berth.network.dns import DnsServer  # dnspython: only once a user network is used

            self._dns = DnsServer(self)
        return self._dns

    def stop(self, container_id: str) -> None:
        """The container's resolver goes (its sockets hold the netns alive)."""
        if self._dns is not None:
            self._dns.stop(container_id)

    def close(self) -> None:
        if self._dns is not None:
            self._dns.close()

    def has_dns(self, container_id: str) -> bool:
        return self._dns is not None and self._dns.serving(container_id)

    def resolve(self, container_id: str, name: str) -> list[str] | None:
        """`Names.resolve`: name, alias, short id or hostname of a container, or `<that>.<network>`,
        on the user-defined networks the asker is on; its own legacy links' aliases too."""
        asker = self.live.get(container_id)
        if asker is None:
            return None
        mine = {n.id: n for v in asker.networks.values() if (n := self.state.user_net(v)) is not None}
        links = list(asker.host_config.get("Links") or ())
        for v in asker.networks.values():
            if self.state.user_net(v) is not None:
                links += v.get("Links") or []
        for link in links:
            child, alias = parse_link(str(link))
            if name == alias.lower() and self.state.lookup is not None:
                try:
                    name = self.state.lookup(child).name.lower()
                except BerthError:
                    pass
        ips: list[str] = []
        for c in self.live.values():
            for view in c.networks.values():
                n = self.state.user_net(view)
                if n is None or n.id not in mine:
                    continue
                names = {x.lower() for x in dns_names(c, view)}
                suffix = "." + n.name.lower()
                if name in names or (name.endswith(suffix) and name[: -len(suffix)] in names):
                    ips.append(str(view["IPAddress"]))
                    if view.get("GlobalIPv6Address"):
                        ips.append(str(view["GlobalIPv6Address"]))
        for n in mine.values():  # overlay networks: the other engines' containers, from the store
            if n.driver == "overlay" and self.state.overlay is not None:
                suffix = "." + n.name.lower()
                for ep in self.state.overlay.remote(n.id):
                    names = {x.lower() for x in ep.names}
                    if name in names or (name.endswith(suffix) and name[: -len(suffix)] in names):
                        ips.append(ep.ip)
        return ips or None

    def reverse(self, container_id: str, ip: str) -> str | None:
        asker = self.live.get(container_id)
        if asker is None:
            return None
        mine = {n.id for v in asker.networks.values() if (n := self.state.user_net(v)) is not None}
        for c in self.live.values():
            for view in c.networks.values():
                n = self.state.user_net(view)
                if n is not None and n.id in mine and ip in (view.get("IPAddress"), view.get("GlobalIPv6Address")):
                    return f"{c.name}.{n.name}"
        for nid in mine:
            n = self.state.nets.get(nid)
            if n is not None and n.driver == "overlay" and self.state.overlay is not None:
                for ep in self.state.overlay.remote(nid):
                    if ep.ip == ip:
                        return f"{ep.name}.{n.name}"
        return None

    def upstreams(self, container_id: str) -> list[str]:
        """The container's `--dns` servers, else the host's; none on internal networks only."""
        c = self.live.get(container_id)
        if c is None:
            return []
        nets = [n for v in c.networks.values() if (n := self.state.user_net(v)) is not None]
        if nets and all(n.internal for n in nets):
            return []
        from berth.network.dns import host_nameservers

        return [str(s) for s in c.host_config.get("Dns") or ()] or host_nameservers()

    async def resume(self, containers: list[Container]) -> None:
        """After a daemon restart: the table and a resolver for every running container on a
        user-defined network (new sockets; the rule in its netns is rewritten for their ports)."""
        for c in containers:
            if not c.running or not any(self.state.user_net(v) for v in c.networks.values()):
                continue
            path = os.path.join(self.state.netns_dir, c.id)
            if not netns.exists(path):
                continue
            self.live[c.id] = c
            from berth.network.dns import open_sockets

            try:
                socks = await asyncio.to_thread(open_sockets, path, False)
                await self.server().serve(c.id, socks)
            except (OSError, BerthError) as e:
                log.warning("built-in DNS of %s not restored: %s", c.id[:12], e)
        if self.state.overlay is not None:  # their overlay endpoints, under this daemon's lease
            running = [(c, n, v) for c in self.live.values() for v in c.networks.values()
                       if (n := self.state.user_net(v)) is not None and n.driver == "overlay"]
            await asyncio.to_thread(self.state.overlay.restore, running)
