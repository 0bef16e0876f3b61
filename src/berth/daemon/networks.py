"""The network service: what the API and the container service call for networks.

It creates, removes and plans networks itself and hands the rest to its parts, each in its own
module: records, IPAM and the driver (network_state.py), containers' addresses and endpoints
(network_attach.py), the built-in DNS's table (network_dns.py), legacy links (network_links.py)
and the API's shapes (network_views.py). Overlay networks go to the OverlayService (overlay.py)
when the daemon has a cluster store; in single-node swarm mode (swarm.py) a swarm-scoped overlay
has no peers, so a local bridge realises it.
The service never touches the API or the container service; the caller passes the container.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from berth.common.db import Database
from berth.common.errors import Conflict, Forbidden, InvalidParameter, NotFound
from berth.common.ids import new_id
from berth.network import netns
from berth.network.ipam import host_routes, host_routes6
from berth.network.model import NetworkDriver, PortBinding

from .events import EventBus
from .model import Container, now_rfc3339
from .network_attach import Attachment, NetworkAttachments
from .network_dns import ContainerNames
from .network_links import LegacyLinks
from .network_state import BRIDGE_NAME, Network, NetworkSettingsOptions, NetworkState
from .network_views import apply_endpoint_config, endpoint_view, inspect_view, net_id, split_families

if TYPE_CHECKING:
    from .overlay import OverlayService

log = logging.getLogger("berth.networks")


class NetworkService:
    def __init__(self, db: Database, exec_root: str, events: EventBus,
                 opts: NetworkSettingsOptions | None = None,
                 driver_factory: Callable[[str], NetworkDriver] | None = None) -> None:
        self.state = NetworkState(db, exec_root, events, opts or NetworkSettingsOptions(), driver_factory)
        self.db = db
        self.events = events
        self.opts = self.state.opts
        self.netns_dir = self.state.netns_dir
        self.ipam = self.state.ipam
        self.names = ContainerNames(self.state)
        self.links = LegacyLinks(self.state)
        self.attachments = NetworkAttachments(self.state, self.names, self.links)
        self.swarm_active: Callable[[], bool] = lambda: False  # set by the daemon (swarm.py)

    # --- the daemon's hooks, kept where every part reads them ----------------------------------
    @property
    def overlay(self) -> OverlayService | None:
        return self.state.overlay

    @overlay.setter
    def overlay(self, overlay: OverlayService | None) -> None:
        self.state.overlay = overlay

    @property
    def lookup(self) -> Callable[[str], Container] | None:
        return self.state.lookup

    @lookup.setter
    def lookup(self, lookup: Callable[[str], Container] | None) -> None:
        self.state.lookup = lookup

    @property
    def all_containers(self) -> Callable[[], list[Container]] | None:
        return self.state.all_containers

    @all_containers.setter
    def all_containers(self, all_containers: Callable[[], list[Container]] | None) -> None:
        self.state.all_containers = all_containers

    @property
    def container_dir(self) -> Callable[[Container], str] | None:
        return self.state.container_dir

    @container_dir.setter
    def container_dir(self, container_dir: Callable[[Container], str] | None) -> None:
        self.state.container_dir = container_dir

    # --- records (network_state.py) -------------------------------------------------------------
    def all(self) -> list[Network]:
        return self.state.all()

    def get(self, ref: str) -> Network:
        """By full id, name, or unique id prefix, as dockerd resolves networks."""
        return self.state.get(ref)

    def set_overlay_networks(self, nets: list[Network]) -> None:
        """The cluster's overlay networks now (from the store's watch): kept beside the local ones,
        in memory only."""
        self.state.set_overlay_networks(nets)

    # --- daemon start -------------------------------------------------------------------------
    async def recover(self) -> None:
        """Before containers are re-watched: give the driver back every network and the endpoints of
        running containers, so published ports keep working (only if there is anything to restore:
        otherwise the driver loads on first use)."""
        if self.state.connected_endpoints() or any((n.driver == "bridge" or n.swarm_local) and not n.predefined
                                                   for n in self.state.nets.values()):
            await asyncio.to_thread(self.state.driver_now)

    # --- create / remove networks ---------------------------------------------------------------
    def users(self, n: Network, containers: list[Container]) -> list[Container]:
        return [c for c in containers if any(net_id(c, k) == n.id or k == n.name for k in c.networks)]

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("Name")
        if not name or not isinstance(name, str):
            raise InvalidParameter("network name is required")
        if any(n.name == name for n in self.state.nets.values()):
            raise Conflict(f"network with name {name} already exists")
        driver = body.get("Driver") or "bridge"
        swarm_net = self._swarm_scoped(body, driver)
        if driver == "overlay" and not swarm_net:
            return await self._create_overlay(body)
        if driver not in ("bridge", "overlay"):
            if driver in ("host", "null"):
                raise Forbidden(f"only one instance of \"{driver}\" network is allowed")
            raise NotFound(f'could not find plugin {driver} in v1 plugin registry: plugin not found')
        ipv6 = bool(body.get("EnableIPv6"))
        ipam = body.get("IPAM") or {}
        if not isinstance(ipam, dict):
            raise InvalidParameter("IPAM must be an object")
        if (ipam.get("Driver") or "default") != "default":
            raise NotFound(f"could not find IPAM driver {ipam.get('Driver')}")
        configs = [c for c in (ipam.get("Config") or []) if isinstance(c, dict)]
        cfg, cfg6 = split_families(configs)
        if cfg6 and not ipv6:
            raise InvalidParameter("an IPv6 subnet needs EnableIPv6 (network create --ipv6)")
        options = {str(k): str(v) for k, v in (body.get("Options") or {}).items()}
        nid = new_id()
        bridge = options.get(BRIDGE_NAME) or f"br-{nid[:12]}"
        if len(bridge) > 15:
            raise InvalidParameter(f"bridge name {bridge!r} is longer than 15 characters")
        if any(n.bridge == bridge for n in self.state.nets.values()):
            raise Conflict(f"bridge {bridge} is already used by another network")
        self.ipam.add_network(nid, cfg.get("Subnet") or None, cfg.get("Gateway") or None,
                              cfg.get("IPRange") or None, host_routes=host_routes())
        aux = cfg.get("AuxiliaryAddresses") or {}
        try:
            if not isinstance(aux, dict):
                raise InvalidParameter("AuxiliaryAddresses must be an object")
            for host, addr in aux.items():  # reserved: never given to a container
                try:
                    self.ipam.allocate(nid, str(addr))
                except InvalidParameter as e:
                    raise InvalidParameter(f"invalid auxiliary address {host}={addr}: {e.message}") from None
            if ipv6:
                self.ipam.add_network6(nid, cfg6.get("Subnet") or None, cfg6.get("Gateway") or None,
                                       cfg6.get("IPRange") or None, host_routes=host_routes6())
        except BaseException:
            self.ipam.remove_network(nid)
            raise
        n = Network(nid, name, driver, now_rfc3339(), internal=bool(body.get("Internal")),
                    attachable=bool(body.get("Attachable")), options=options,
                    labels={str(k): str(v) for k, v in (body.get("Labels") or {}).items()},
                    ipam_config=[{k: str(v) for k, v in cfg.items() if k in ("Subnet", "Gateway", "IPRange")}
                                 | ({"AuxiliaryAddresses": {str(k): str(v) for k, v in aux.items()}} if aux else {})]
                    if cfg else [], bridge=bridge,
                    ipam_options={str(k): str(v) for k, v in ipam["Options"].items()}
                    if isinstance(ipam.get("Options"), dict) else None, ipv6=ipv6)
        if swarm_net:
            n.scope, n.ingress = "swarm", bool(body.get("Ingress"))
        if cfg6:
            n.ipam_config.append({k: str(v) for k, v in cfg6.items() if k in ("Subnet", "Gateway", "IPRange")})
        try:
            netcfg = n.config(self.ipam)

            def realise() -> None:
                self.state.driver_now().create_network(netcfg)

            await asyncio.to_thread(realise)
        except BaseException:
            self.ipam.remove_network(nid)
            raise
        self.state.nets[nid] = n
        self.state.save_net(n)
        self.events.publish("network", "create", nid, {"name": name, "type": driver})
        return {"Id": nid, "Warning": ""}

    def _swarm_scoped(self, body: dict[str, Any], driver: str) -> bool:
        """Whether `body` makes a swarm mode overlay (realised by the bridge driver: a single-node
        swarm has no peers). Without a swarm, overlays go to the cluster store as before."""
        scope = str(body.get("Scope") or "")
        if scope not in ("", "local", "swarm", "global"):
            raise InvalidParameter(f"invalid scope {scope!r}: want local, swarm or global")
        if driver != "overlay":
            if scope in ("swarm", "global") or body.get("Ingress"):
                raise InvalidParameter(f"berth makes {scope or 'ingress'} networks with the overlay driver only")
            return False
        if scope == "local":
            raise InvalidParameter("an overlay network spans hosts: its scope is swarm or global, not local")
        swarm = self.swarm_active()
        if scope == "global" or (not scope and self.overlay is not None) or not swarm:
            if scope == "swarm" and not swarm:
                raise Forbidden("swarm-scoped networks need swarm mode: run \"docker swarm init\" first")
            if body.get("Ingress"):
                raise Forbidden("an ingress network needs swarm mode: run \"docker swarm init\" first")
            return False
        if body.get("Ingress"):
            if body.get("Attachable"):
                raise InvalidParameter("ingress network cannot be attachable")
            other = next((n for n in self.state.nets.values() if n.ingress), None)
            if other is not None:
                raise Forbidden(f"ingress network ({other.name}) is already present")
        return True

    def check_attachable(self, n: Network) -> None:
        """As swarm: a container joins a swarm network only if it was made `--attachable`."""
        if n.swarm_local and not n.attachable:
            raise Forbidden(f"Could not attach to network {n.name}: rpc error: code = PermissionDenied "
                            f"desc = network {n.name} not manually attachable")

    async def _create_overlay(self, body: dict[str, Any]) -> dict[str, Any]:
        overlay = self.overlay
        if overlay is None:
            raise Forbidden("overlay networks need a cluster store: start berthd with --cluster-store "
                            "etcd://HOST:PORT and --cluster-advertise ADDR|IFACE")
        n = await asyncio.to_thread(overlay.create, body)
        self.state.nets[n.id] = n
        self.events.publish("network", "create", n.id, {"name": n.name, "type": "overlay"})
        return {"Id": n.id, "Warning": ""}

    async def remove(self, ref: str, containers: list[Container]) -> None:
        n = self.get(ref)
        if n.predefined:
            raise Forbidden(f"{n.name} is a pre-defined network and cannot be removed")
        # As dockerd: only running containers have endpoints; a stopped one keeps the name and fails
        # to start ("network ... not found") until it is disconnected or the network is back.
        used = [c for c in self.users(n, containers) if c.running]
        if used:
            raise Conflict(f"error while removing network: network {n.name} id {n.id} has active endpoints "
                           f"({', '.join(c.name for c in used)})")
        if n.driver == "overlay" and self.overlay is not None and not n.swarm_local:  # cluster-wide, in use anywhere
            await asyncio.to_thread(self.overlay.remove, n)
            self.state.nets.pop(n.id, None)
            self.events.publish("network", "destroy", n.id, {"name": n.name, "type": n.driver})
            return
        await asyncio.to_thread(lambda: self.state.driver_now().delete_network(n.id))
        del self.state.nets[n.id]
        self.ipam.remove_network(n.id)
        self.state.delete_network(n.id)
        self.events.publish("network", "destroy", n.id, {"name": n.name, "type": n.driver})

    # --- a container's networks at create -------------------------------------------------------
    def plan(self, mode: str, endpoints_config: Any, mac: str | None = None) -> dict[str, Any]:
        """The container's `NetworkSettings.Networks` at create: one entry per network it joins.
        A missing network is a bad parameter here: a 404 from create makes docker's CLI pull.
        `mac` is `Config.MacAddress` (API < 1.44): it goes to the network of the mode."""
        try:
            out = self._plan(mode, endpoints_config)
        except NotFound as e:
            raise InvalidParameter(e.message) from None
        if mac:
            first = next(iter(out.values()), None)
            if first is not None and not first.get("MacAddress") and mode not in ("host", "none"):
                apply_endpoint_config(first, {"MacAddress": mac}, None)
        return out

    def _plan(self, mode: str, endpoints_config: Any) -> dict[str, Any]:
        if mode.startswith("container:"):
            return {}
        if mode in ("host", "none"):
            return {mode: endpoint_view(self.get(mode).id)}
        name = "bridge" if mode == "default" else mode
        n = self.get(name)
        self.check_attachable(n)
        if n.driver in ("host", "null"):
            return {n.name: endpoint_view(n.id)}
        wanted = endpoints_config if isinstance(endpoints_config, dict) else {}
        mine = (mode, name, n.name, n.id)  # docker's CLI names the default network "default"
        cfg = next((v for k, v in wanted.items() if k in mine and v), None) or {}
        ep = endpoint_view(n.id)
        apply_endpoint_config(ep, cfg, n)
        out = {n.name: ep}
        for other, ocfg in wanted.items():  # API >= 1.44 may name several networks at create
            if other in mine:
                continue
            on = self.get(other)
            self.check_attachable(on)
            oep = endpoint_view(on.id)
            apply_endpoint_config(oep, ocfg or {}, on)
            out[on.name] = oep
        return out


    # --- API shapes (network_views.py) ----------------------------------------------------------
    def inspect_view(self, n: Network, containers: list[Container]) -> dict[str, Any]:
        return inspect_view(self.ipam, self.overlay, n, containers)

    # --- containers' endpoints (network_attach.py) ----------------------------------------------
    def port_bindings(self, c: Container) -> tuple[PortBinding, ...]:
        return self.attachments.port_bindings(c)

    async def attach(self, c: Container) -> Attachment:
        """Before the runtime creates the container: its netns, veths and published ports.
        All or nothing: on error whatever was done is undone."""
        return await self.attachments.attach(c)

    async def prepare(self, c: Container) -> tuple[Attachment, Callable[[], Awaitable[None]] | None]:
        """`attach` in two steps: the netns and addresses now, and a `finish` that wires the rest
        (see NetworkAttachments.prepare)."""
        return await self.attachments.prepare(c)

    async def detach(self, c: Container) -> None:
        """After the container exited: its endpoints and netns go; its addresses stay reserved."""
        await self.attachments.detach(c)

    def release(self, c: Container) -> None:
        """At removal: the container's addresses go back to the pools."""
        self.attachments.release(c)

    async def connect(self, n: Network, c: Container, cfg: dict[str, Any]) -> None:
        """`network connect`: a running container gets the link now, a stopped one at its start."""
        self.check_attachable(n)
        await self.attachments.connect(n, c, cfg)

    async def disconnect(self, n: Network, c: Container) -> None:
        await self.attachments.disconnect(n, c)

    # --- built-in DNS (network_dns.py) -----------------------------------------------------------
    def has_dns(self, container_id: str) -> bool:
        return self.names.has_dns(container_id)

    def resolve(self, container_id: str, name: str) -> list[str] | None:
        return self.names.resolve(container_id, name)

    def reverse(self, container_id: str, ip: str) -> str | None:
        return self.names.reverse(container_id, ip)

    def upstreams(self, container_id: str) -> list[str]:
        return self.names.upstreams(container_id)

    async def resume(self, containers: list[Container]) -> None:
        """After a daemon restart: the built-in DNS of every running container on a user-defined network."""
        await self.names.resume(containers)

    # --- legacy links (network_links.py) ---------------------------------------------------------
    def register_links(self, c: Container) -> list[str] | None:
        """At create: each linked container must exist (see LegacyLinks.register_links)."""
        return self.links.register_links(c)

    def link_target(self, parent: Container, alias: str) -> str:
        return self.links.link_target(parent, alias)

    def unlink(self, parent: Container, alias: str) -> None:
        """`rm --link parent/alias` (see LegacyLinks.unlink)."""
        self.links.unlink(parent, alias)

    def close(self) -> None:
        """Daemon shutdown: port holds and netlink go; bridges, rules and netns stay (live restore)."""
        self.names.close()
        self.state.close_driver()
        try:
            netns.release_dir(self.netns_dir)  # only when no container's namespace is left in it
        except OSError as e:
            log.warning("could not release %s: %s", self.netns_dir, e)
