"""The network service: network records, IPAM state and container endpoints, and the driver calls
that realise them at container start, exit and removal.

Owns three SQLite tables (`networks`, `network_ipam`, `network_endpoints`). A container keeps its
address on a network from its first start (or `network connect`) until it is removed or
disconnected; its endpoint (veth, published ports) exists only while it runs, and is recorded so
that `recover` can hand it back to the driver after a daemon crash.

The bridge driver (pyroute2, ~150 ms to import) is loaded on first use: a daemon that never
starts a networked container never imports it. Driver calls block: they run in a worker thread.
The service never touches the API or the container service; the caller passes the container.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, ip_address
from typing import TYPE_CHECKING, Any

from berth.common.db import Database
from berth.common.errors import BerthError, Conflict, Forbidden, InvalidParameter, NotFound
from berth.common.ids import new_id
from berth.network import netns
from berth.network.ipam import Ipam, host_routes, host_routes6
from berth.network.model import Endpoint, NetworkConfig, NetworkDriver, PortBinding, mac_for_ip
from berth.network.ports import PortAllocated

from .events import EventBus
from .model import Container, now_rfc3339

if TYPE_CHECKING:
    from collections.abc import Callable

    from berth.network.dns import DnsServer, Sockets

    from .overlay import OverlayService

log = logging.getLogger("berth.networks")

SCHEMA = """
CREATE TABLE IF NOT EXISTS networks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS network_ipam (
    key TEXT PRIMARY KEY,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS network_endpoints (
    container_id TEXT NOT NULL,
    network_id TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (container_id, network_id)
);
"""

PREDEFINED = ("bridge", "host", "none")
ICC = "com.docker.network.bridge.enable_icc"
MASQ = "com.docker.network.bridge.enable_ip_masquerade"
BRIDGE_NAME = "com.docker.network.bridge.name"
MTU = "com.docker.network.driver.mtu"


@dataclass
class NetworkSettingsOptions:
    """The daemon's own names, so several berthd's can share a host."""

    bridge_name: str = "berth0"
    iptables_prefix: str = "BERTH"
    pools: list[tuple[IPv4Network, int]] = field(
        default_factory=lambda: [(IPv4Network("10.210.0.0/16"), 24)])


def parse_pool(value: str) -> tuple[IPv4Network, int]:
    """`10.210.0.0/16` or `10.210.0.0/16,size=24` (dockerd's `--default-address-pool` spirit)."""
    base, _, rest = value.partition(",")
    size = 24
    if rest:
        key, _, val = rest.partition("=")
        if key.strip() != "size" or not val.strip().isdigit():
            raise ValueError(f"invalid pool {value!r}: want CIDR[,size=N]")
        size = int(val)
    net = IPv4Network(base.strip(), strict=False)
    if size < net.prefixlen or size > 30:
        raise ValueError(f"invalid pool {value!r}: size must be between {net.prefixlen} and 30")
    return net, size


@dataclass
class Network:
    """A network record as persisted: the API's view, plus what the driver needs."""

    id: str
    name: str
    driver: str  # bridge | host | null
    created: str
    internal: bool = False
    attachable: bool = False
    options: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    ipam_config: list[dict[str, Any]] = field(default_factory=list)  # as requested
    bridge: str = ""
    ipam_options: dict[str, str] | None = None  # --ipam-opt, recorded only; None if not sent
    ipv6: bool = False  # EnableIPv6: a second address space in ipam.networks6

    def to_record(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_record(cls, d: dict[str, Any]) -> Network:
        return cls(**d)

    @property
    def predefined(self) -> bool:
        return self.name in PREDEFINED

    def config(self, ipam: Ipam) -> NetworkConfig:
        na = ipam.networks[self.id]
        na6 = ipam.networks6.get(self.id)
        return NetworkConfig(id=self.id, bridge=self.bridge, subnet=na.subnet, gateway=na.gateway,
                             mtu=int(self.options.get(MTU) or 1500), internal=self.internal,
                             icc=_truthy(self.options.get(ICC, "true")),
                             masquerade=_truthy(self.options.get(MASQ, "true")),
                             subnet6=na6.subnet if na6 else None, gateway6=na6.gateway if na6 else None)

    def user_subnet(self, v6: bool) -> bool:
        """Whether `--subnet` gave this family's subnet (docker's condition for a fixed address)."""
        return any((":" in str(c.get("Subnet") or "")) == v6 for c in self.ipam_config if c.get("Subnet"))


def _truthy(v: str) -> bool:
    return v.strip().lower() in ("1", "true", "yes", "on")


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


class NetworkService:
    def __init__(self, db: Database, exec_root: str, events: EventBus,
                 opts: NetworkSettingsOptions | None = None,
                 driver_factory: Callable[[str], NetworkDriver] | None = None) -> None:
        self.db = db
        self.events = events
        self.opts = opts or NetworkSettingsOptions()
        self.netns_dir = os.path.join(exec_root, "netns")
        self._driver_factory = driver_factory or (lambda prefix: _bridge_driver(prefix, self.overlay is not None))
        self._driver: NetworkDriver | None = None
        self._driver_lock = threading.Lock()
        self.ipam = Ipam(self.opts.pools)
        self._nets: dict[str, Network] = {}
        # Set by the daemon: containers by name or id (legacy links name other containers), all
        # of them, and a container's directory (its /etc/hosts, which links rewrite).
        self.lookup: Callable[[str], Container] | None = None
        self.all_containers: Callable[[], list[Container]] | None = None
        self.container_dir: Callable[[Container], str] | None = None
        # Running containers with an address on a user-defined network: the built-in DNS's table.
        self._live: dict[str, Container] = {}
        self._dns: DnsServer | None = None
        # Overlay networks (records in the cluster store), set by the daemon with --cluster-store.
        self.overlay: OverlayService | None = None
        db.ensure_schema(SCHEMA)
        for row in db.query("SELECT record FROM networks"):
            n = Network.from_record(json.loads(row["record"]))
            self._nets[n.id] = n
        rows = db.query("SELECT state FROM network_ipam WHERE key='ipam'")
        if rows:
            self.ipam.load(json.loads(rows[0]["state"]))
        self._ensure_predefined()

    # --- records ------------------------------------------------------------------------------
    def _save_net(self, n: Network) -> None:
        with self.db.tx() as tx:
            tx.execute("INSERT OR REPLACE INTO networks(id, name, record) VALUES (?,?,?)",
                       (n.id, n.name, json.dumps(n.to_record())))
            tx.execute("INSERT OR REPLACE INTO network_ipam(key, state) VALUES ('ipam', ?)",
                       (json.dumps(self.ipam.to_dict()),))

    def _save_ipam(self) -> None:
        with self.db.tx() as tx:
            tx.execute("INSERT OR REPLACE INTO network_ipam(key, state) VALUES ('ipam', ?)",
                       (json.dumps(self.ipam.to_dict()),))

    def _ensure_predefined(self) -> None:
        have = {n.name for n in self._nets.values()}
        for name, drv in (("bridge", "bridge"), ("host", "host"), ("none", "null")):
            if name in have:
                continue
            n = Network(new_id(), name, drv, now_rfc3339())
            if name == "bridge":
                n.bridge = self.opts.bridge_name
                n.options = {"com.docker.network.bridge.default_bridge": "true", ICC: "true", MASQ: "true",
                             "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
                             BRIDGE_NAME: self.opts.bridge_name, MTU: "1500"}
                self.ipam.add_network(n.id, host_routes=host_routes())
            self._nets[n.id] = n
            self._save_net(n)

    def all(self) -> list[Network]:
        return list(self._nets.values())

    def set_overlay_networks(self, nets: list[Network]) -> None:
        """The cluster's overlay networks now (from the store's watch): kept beside the local ones,
        in memory only."""
        ids = {n.id for n in nets}
        for nid in [k for k, n in self._nets.items() if n.driver == "overlay" and k not in ids]:
            del self._nets[nid]
        for n in nets:
            self._nets[n.id] = n

    def get(self, ref: str) -> Network:
        """By full id, name, or unique id prefix, as dockerd resolves networks."""
        if ref in self._nets:
            return self._nets[ref]
        for n in self._nets.values():
            if n.name == ref:
                return n
        matches = [n for n in self._nets.values() if n.id.startswith(ref)] if ref else []
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidParameter(f"network {ref} is ambiguous ({len(matches)} matches found based on ID "
                                   "prefix)")
        raise NotFound(f"network {ref} not found")

    def _driver_now(self) -> NetworkDriver:
        """The bridge driver, loaded and restored on first use (blocking: call in a thread)."""
        with self._driver_lock:
            if self._driver is None:
                drv = self._driver_factory(self.opts.iptables_prefix)
                warnings = drv.restore(self._bridge_configs(), self._connected_endpoints())
                for w in warnings:
                    log.warning("published port not restored: %s", w)
                self._driver = drv
            return self._driver

    def _bridge_configs(self) -> list[NetworkConfig]:
        return [n.config(self.ipam) for n in self._nets.values() if n.driver == "bridge"]

    def _endpoint_rows(self, container_id: str | None = None) -> list[dict[str, Any]]:
        if container_id is None:
            rows = self.db.query("SELECT record FROM network_endpoints")
        else:
            rows = self.db.query("SELECT record FROM network_endpoints WHERE container_id=?", (container_id,))
        return [json.loads(r["record"]) for r in rows]

    def _connected_endpoints(self) -> list[Endpoint]:
        return [Endpoint.from_dict(r["endpoint"]) for r in self._endpoint_rows() if r.get("endpoint")]

    def _save_ep(self, rec: dict[str, Any]) -> None:
        with self.db.tx() as tx:
            tx.execute("INSERT OR REPLACE INTO network_endpoints(container_id, network_id, record) VALUES (?,?,?)",
                       (rec["container_id"], rec["network_id"], json.dumps(rec)))

    def _del_ep(self, container_id: str, network_id: str) -> None:
        with self.db.tx() as tx:
            tx.execute("DELETE FROM network_endpoints WHERE container_id=? AND network_id=?",
                       (container_id, network_id))

    # --- daemon start -------------------------------------------------------------------------
    async def recover(self) -> None:
        """Before containers are re-watched: give the driver back every network and the endpoints of
        running containers, so published ports keep working (only if there is anything to restore:
        otherwise the driver loads on first use)."""
        if self._connected_endpoints() or any(n.driver == "bridge" and not n.predefined
                                              for n in self._nets.values()):
            await asyncio.to_thread(self._driver_now)

    # --- create / remove networks ---------------------------------------------------------------
    def users(self, n: Network, containers: list[Container]) -> list[Container]:
        return [c for c in containers if any(_net_id(c, k) == n.id or k == n.name for k in c.networks)]

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("Name")
        if not name or not isinstance(name, str):
            raise InvalidParameter("network name is required")
        if any(n.name == name for n in self._nets.values()):
            raise Conflict(f"network with name {name} already exists")
        driver = body.get("Driver") or "bridge"
        if driver == "overlay":
            return await self._create_overlay(body)
        if driver != "bridge":
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
        cfg, cfg6 = _split_families(configs)
        if cfg6 and not ipv6:
            raise InvalidParameter("an IPv6 subnet needs EnableIPv6 (network create --ipv6)")
        options = {str(k): str(v) for k, v in (body.get("Options") or {}).items()}
        nid = new_id()
        bridge = options.get(BRIDGE_NAME) or f"br-{nid[:12]}"
        if len(bridge) > 15:
            raise InvalidParameter(f"bridge name {bridge!r} is longer than 15 characters")
        if any(n.bridge == bridge for n in self._nets.values()):
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
        n = Network(nid, name, "bridge", now_rfc3339(), internal=bool(body.get("Internal")),
                    attachable=bool(body.get("Attachable")), options=options,
                    labels={str(k): str(v) for k, v in (body.get("Labels") or {}).items()},
                    ipam_config=[{k: str(v) for k, v in cfg.items() if k in ("Subnet", "Gateway", "IPRange")}
                                 | ({"AuxiliaryAddresses": {str(k): str(v) for k, v in aux.items()}} if aux else {})]
                    if cfg else [], bridge=bridge,
                    ipam_options={str(k): str(v) for k, v in ipam["Options"].items()}
                    if isinstance(ipam.get("Options"), dict) else None, ipv6=ipv6)
        if cfg6:
            n.ipam_config.append({k: str(v) for k, v in cfg6.items() if k in ("Subnet", "Gateway", "IPRange")})
        try:
            netcfg = n.config(self.ipam)

            def realise() -> None:
                self._driver_now().create_network(netcfg)

            await asyncio.to_thread(realise)
        except BaseException:
            self.ipam.remove_network(nid)
            raise
        self._nets[nid] = n
        self._save_net(n)
        self.events.publish("network", "create", nid, {"name": name, "type": "bridge"})
        return {"Id": nid, "Warning": ""}

    async def _create_overlay(self, body: dict[str, Any]) -> dict[str, Any]:
        overlay = self.overlay
        if overlay is None:
            raise Forbidden("overlay networks need a cluster store: start berthd with --cluster-store "
                            "etcd://HOST:PORT and --cluster-advertise ADDR|IFACE")
        n = await asyncio.to_thread(overlay.create, body)
        self._nets[n.id] = n
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
        if n.driver == "overlay" and self.overlay is not None:  # cluster-wide, refused while in use anywhere
            await asyncio.to_thread(self.overlay.remove, n)
            self._nets.pop(n.id, None)
            self.events.publish("network", "destroy", n.id, {"name": n.name, "type": n.driver})
            return
        await asyncio.to_thread(lambda: self._driver_now().delete_network(n.id))
        del self._nets[n.id]
        self.ipam.remove_network(n.id)
        with self.db.tx() as tx:
            tx.execute("DELETE FROM networks WHERE id=?", (n.id,))
            tx.execute("DELETE FROM network_endpoints WHERE network_id=?", (n.id,))
            tx.execute("INSERT OR REPLACE INTO network_ipam(key, state) VALUES ('ipam', ?)",
                       (json.dumps(self.ipam.to_dict()),))
        self.events.publish("network", "destroy", n.id, {"name": n.name, "type": n.driver})

    # --- containers -------------------------------------------------------------------------------
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
                _apply_endpoint_config(first, {"MacAddress": mac}, None)
        return out

    def _plan(self, mode: str, endpoints_config: Any) -> dict[str, Any]:
        if mode.startswith("container:"):
            return {}
        if mode in ("host", "none"):
            return {mode: endpoint_view(self.get(mode).id)}
        name = "bridge" if mode == "default" else mode
        n = self.get(name)
        if n.driver in ("host", "null"):
            return {n.name: endpoint_view(n.id)}
        wanted = endpoints_config if isinstance(endpoints_config, dict) else {}
        mine = (mode, name, n.name, n.id)  # docker's CLI names the default network "default"
        cfg = next((v for k, v in wanted.items() if k in mine and v), None) or {}
        ep = endpoint_view(n.id)
        _apply_endpoint_config(ep, cfg, n)
        out = {n.name: ep}
        for other, ocfg in wanted.items():  # API >= 1.44 may name several networks at create
            if other in mine:
                continue
            on = self.get(other)
            oep = endpoint_view(on.id)
            _apply_endpoint_config(oep, ocfg or {}, on)
            out[on.name] = oep
        return out

    def _bridged(self, c: Container, strict: bool = False) -> list[tuple[str, Network]]:
        """The container's bridge networks; `strict` (a start): a network removed meanwhile is an
        error, as dockerd's "network ... not found"."""
        out = []
        for key in c.networks:
            nid = _net_id(c, key)
            n = self._nets.get(nid) or self._by_name(key)
            if n is None and strict and key not in PREDEFINED:
                raise NotFound(f"network {key} not found")
            if n is not None and n.driver in ("bridge", "overlay"):
                out.append((key, n))
        return out

    def _by_name(self, name: str) -> Network | None:
        return next((n for n in self._nets.values() if n.name == name), None)

    def _allocation(self, c: Container, n: Network) -> tuple[IPv4Address, IPv6Address | None]:
        """The container's addresses on `n`: kept from an earlier start, else new ones."""
        for rec in self._endpoint_rows(c.id):
            if rec["network_id"] == n.id:
                return IPv4Address(rec["ip"]), IPv6Address(rec["ip6"]) if rec.get("ip6") else None
        ep = c.networks.get(n.name) or {}
        wanted = ((ep.get("IPAMConfig") or {}).get("IPv4Address")) or None
        wanted6 = ((ep.get("IPAMConfig") or {}).get("IPv6Address")) or None
        if n.driver == "overlay" and self.overlay is not None:  # cluster-wide, in the store
            ip = self.overlay.allocate(n.id, c.id, wanted)
            self._save_ep({"container_id": c.id, "network_id": n.id, "ip": str(ip), "ip6": None, "endpoint": None})
            return ip, None
        ip = self.ipam.allocate(n.id, wanted)
        try:
            ip6 = self.ipam.allocate6(n.id, wanted6)
        except BaseException:
            self.ipam.release(n.id, ip)
            raise
        self._save_ep({"container_id": c.id, "network_id": n.id, "ip": str(ip),
                       "ip6": str(ip6) if ip6 else None, "endpoint": None})
        self._save_ipam()
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
            port, proto = _port_key(key)
            for b in binds or [{}]:
                b = b or {}
                lo, hi = _host_port_range(str(b.get("HostPort") or ""))
                out.append(PortBinding(port, proto, b.get("HostIp") or "0.0.0.0", lo, hi))
                seen.add((port, proto))
        if hc.get("PublishAllPorts"):
            for key in c.config.get("ExposedPorts") or {}:
                port, proto = _port_key(key)
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
        link_hosts, link_env = self._links(c, nets)
        both = [await self._allocation_async(c, n) for _, n in nets]
        ips = [ip for ip, _ in both]
        ip6s = [ip6 for _, ip6 in both]
        # docker's rule: the built-in DNS for a container on any user-defined network
        with_dns = any(not n.predefined for _, n in nets)

        def make_netns() -> str:
            self._driver_now()
            netns.delete(os.path.join(self.netns_dir, c.id))  # a leftover of a crash
            return netns.create(self.netns_dir, c.id)

        def connect_all(path: str) -> list[Endpoint]:
            drv = self._driver_now()
            done: list[Endpoint] = []
            try:
                for i, ((key, _n), ip, ip6) in enumerate(zip(nets, ips, ip6s, strict=True)):
                    done.append(self._linker(_n, drv).connect(
                        c.id, _n.id, path, f"eth{i}", ip, ports if i == 0 else (), default_route=i == 0,
                        mac=_mac_opt(c.networks.get(key), ip), ip6=ip6))
            except BaseException:
                for ep in done:
                    drv.disconnect(ep, delete_link=False)
                raise
            return done

        path = os.path.join(self.netns_dir, c.id)
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
                await self._dns_server().serve(c.id, socks)
                eps = connected
            else:
                eps = await asyncio.to_thread(connect_all, path)
        except BaseException as e:
            if socks is not None:
                self._dns_server().stop(c.id)
                socks.close()

            def undo() -> None:
                for ep in connected:
                    self._driver_now().disconnect(ep, delete_link=False)
                netns.delete(path)

            await asyncio.to_thread(undo)
            if isinstance(e, PortAllocated):
                raise PortAllocated(f"driver failed programming external connectivity on endpoint {c.name} "
                                    f"({c.id[:12]}): {e.message}") from None
            raise
        for (key, n), ep in zip(nets, eps, strict=True):
            self._save_ep({"container_id": c.id, "network_id": n.id, "ip": str(ep.ip),
                           "ip6": str(ep.ip6) if ep.ip6 else None, "endpoint": ep.to_dict()})
            view = c.networks.get(key) or endpoint_view(n.id)
            view.update(self._ep_view(n, ep))
            if not n.predefined:
                view["DNSNames"] = dns_names(c, view)
            c.networks[key] = view
            self.events.publish("network", "connect", n.id, {"name": n.name, "type": n.driver, "container": c.id})
        c.ports = ports_view(c, eps[0].ports if eps else ())
        if any(not n.predefined for _, n in nets):
            self._live[c.id] = c
        await self._publish_overlay(c, [(key, n) for key, n in nets if n.driver == "overlay"])
        self._update_parents(c)

    def _linker(self, n: Network, drv: NetworkDriver) -> NetworkDriver | OverlayService:
        """Who wires a container into `n`: the overlay service for overlay networks."""
        return self.overlay if n.driver == "overlay" and self.overlay is not None else drv

    async def _publish_overlay(self, c: Container, nets: list[tuple[str, Network]]) -> None:
        """The container's overlay endpoints into the store (the other engines program them and
        their DNS answers them); before its process starts."""
        overlay = self.overlay
        if overlay is None or not nets:
            return

        def publish() -> None:
            for key, n in nets:
                overlay.publish(c, n, c.networks[key])

        await asyncio.to_thread(publish)

    def _ep_view(self, n: Network, ep: Endpoint) -> dict[str, Any]:
        if n.driver == "overlay":  # no gateway: an overlay is not a way out (see daemon/overlay.py)
            return {"NetworkID": n.id, "EndpointID": _endpoint_id(ep), "Gateway": "", "IPAddress": str(ep.ip),
                    "IPPrefixLen": ep.prefixlen, "MacAddress": ep.mac, "IPv6Gateway": "", "GlobalIPv6Address": "",
                    "GlobalIPv6PrefixLen": 0}
        na = self.ipam.networks[n.id]
        na6 = self.ipam.networks6.get(n.id)
        return {"NetworkID": n.id, "EndpointID": _endpoint_id(ep), "Gateway": str(na.gateway),
                "IPAddress": str(ep.ip), "IPPrefixLen": ep.prefixlen, "MacAddress": ep.mac,
                "IPv6Gateway": str(na6.gateway) if na6 and ep.ip6 else "",
                "GlobalIPv6Address": str(ep.ip6) if ep.ip6 else "", "GlobalIPv6PrefixLen": ep.prefixlen6}

    async def detach(self, c: Container) -> None:
        """After the container exited: its endpoints and netns go; its addresses stay reserved."""
        self._live.pop(c.id, None)
        if self._dns is not None:
            self._dns.stop(c.id)  # its sockets hold the netns alive
        if self.overlay is not None:
            await asyncio.to_thread(self.overlay.withdraw, c.id)
        recs = [r for r in self._endpoint_rows(c.id) if r.get("endpoint")]
        path = os.path.join(self.netns_dir, c.id)
        if not recs and not os.path.exists(path):
            return

        def disconnect_all() -> None:
            drv = self._driver_now() if recs else None
            for r in recs:
                if drv is not None:
                    drv.disconnect(Endpoint.from_dict(r["endpoint"]), delete_link=False)
            netns.delete(path)

        await asyncio.to_thread(disconnect_all)
        for r in recs:
            r["endpoint"] = None
            self._save_ep(r)
            n = self._nets.get(r["network_id"])
            if n is not None:
                self.events.publish("network", "disconnect", n.id,
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
        for r in self._endpoint_rows(c.id):
            self._release_row(r)
        with self.db.tx() as tx:
            tx.execute("DELETE FROM network_endpoints WHERE container_id=?", (c.id,))
            tx.execute("INSERT OR REPLACE INTO network_ipam(key, state) VALUES ('ipam', ?)",
                       (json.dumps(self.ipam.to_dict()),))

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
        _apply_endpoint_config(ep_view, cfg or {}, n)
        c.networks[n.name] = ep_view
        if c.running:
            try:
                ip, ip6 = await self._allocation_async(c, n)
                path = os.path.join(self.netns_dir, c.id)
                ifname = f"eth{len(c.networks) - 1}"

                def link() -> Endpoint:
                    return self._linker(n, self._driver_now()).connect(
                        c.id, n.id, path, ifname, ip, (), default_route=False, mac=_mac_opt(ep_view, ip), ip6=ip6)

                ep = await asyncio.to_thread(link)
            except BaseException:
                del c.networks[n.name]
                self._forget_allocation(c, n)
                raise
            self._save_ep({"container_id": c.id, "network_id": n.id, "ip": str(ep.ip),
                           "ip6": str(ep.ip6) if ep.ip6 else None, "endpoint": ep.to_dict()})
            ep_view.update(self._ep_view(n, ep))
            if not n.predefined:
                ep_view["DNSNames"] = dns_names(c, ep_view)
                self._live[c.id] = c  # its names resolve on `n` from now on
                await self._publish_overlay(c, [(n.name, n)] if n.driver == "overlay" else [])
            else:
                self._update_parents(c)
        self.events.publish("network", "connect", n.id, {"name": n.name, "type": n.driver, "container": c.id})

    def _forget_allocation(self, c: Container, n: Network) -> None:
        for r in self._endpoint_rows(c.id):
            if r["network_id"] == n.id:
                self._release_row(r)
                self._del_ep(c.id, n.id)
                self._save_ipam()

    def _release_row(self, r: dict[str, Any]) -> None:
        if self.overlay is not None and r["network_id"] not in self.ipam.networks:  # an overlay's: in the store
            self.overlay.release(r["network_id"], IPv4Address(r["ip"]))
            return
        self.ipam.release(r["network_id"], IPv4Address(r["ip"]))
        if r.get("ip6"):
            self.ipam.release6(r["network_id"], IPv6Address(r["ip6"]))

    async def disconnect(self, n: Network, c: Container) -> None:
        key = next((k for k in c.networks if k == n.name or _net_id(c, k) == n.id), None)
        if key is None:
            raise Forbidden(f"container {c.id} is not connected to network {n.name}")
        if n.driver not in ("bridge", "overlay"):
            raise Forbidden("container cannot be disconnected from host network or connected to host network")
        if n.driver == "overlay" and self.overlay is not None:
            await asyncio.to_thread(self.overlay.withdraw, c.id, n.id)
        rec = next((r for r in self._endpoint_rows(c.id) if r["network_id"] == n.id), None)
        if rec and rec.get("endpoint"):
            ep = Endpoint.from_dict(rec["endpoint"])
            await asyncio.to_thread(lambda: self._driver_now().disconnect(ep))
        self._forget_allocation(c, n)
        del c.networks[key]
        if c.id in self._live and not any(self._user_net(v) for v in c.networks.values()):
            del self._live[c.id]
        self.events.publish("network", "disconnect", n.id, {"name": n.name, "type": n.driver, "container": c.id})

    # --- API shapes -------------------------------------------------------------------------------
    def inspect_view(self, n: Network, containers: list[Container]) -> dict[str, Any]:
        ipam_cfg: list[dict[str, str]] = []
        if n.driver == "overlay":
            ipam_cfg = [dict(c) for c in n.ipam_config]
        if n.id in self.ipam.networks:
            na = self.ipam.networks[n.id]
            entry = {"Subnet": str(na.subnet), "Gateway": str(na.gateway)}
            if na.ip_range != na.subnet:
                entry["IPRange"] = str(na.ip_range)
            if n.ipam_config and n.ipam_config[0].get("AuxiliaryAddresses"):
                entry["AuxiliaryAddresses"] = n.ipam_config[0]["AuxiliaryAddresses"]
            ipam_cfg = [entry]
        if n.id in self.ipam.networks6:
            na6 = self.ipam.networks6[n.id]
            entry6 = {"Subnet": str(na6.subnet), "Gateway": str(na6.gateway)}
            if na6.ip_range != na6.subnet:
                entry6["IPRange"] = str(na6.ip_range)
            ipam_cfg.append(entry6)
        members: dict[str, Any] = {}
        for c in containers:
            for key, ep in c.networks.items():
                if (key == n.name or ep.get("NetworkID") == n.id) and ep.get("EndpointID"):
                    members[c.id] = {"Name": c.name, "EndpointID": ep["EndpointID"],
                                     "MacAddress": ep.get("MacAddress", ""),
                                     "IPv4Address": f"{ep['IPAddress']}/{ep['IPPrefixLen']}" if ep.get("IPAddress")
                                     else "",
                                     "IPv6Address": f"{ep['GlobalIPv6Address']}/{ep['GlobalIPv6PrefixLen']}"
                                     if ep.get("GlobalIPv6Address") else ""}
        if n.driver == "overlay" and self.overlay is not None:  # the engines with endpoints on it, as swarm's
            extra: dict[str, Any] = {"Peers": self.overlay.peers_view(n.id)}
        else:
            extra = {}
        return {"Name": n.name, "Id": n.id, "Created": n.created,
                "Scope": "global" if n.driver == "overlay" else "local", "Driver": n.driver,
                "EnableIPv6": n.ipv6, "IPAM": {"Driver": "default", "Options": None if n.ipam_options is None else dict(n.ipam_options),
                                              "Config": ipam_cfg},
                "Internal": n.internal, "Attachable": n.attachable, "Ingress": False,
                "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": members,
                "Options": dict(n.options), "Labels": dict(n.labels), **extra}

    # --- built-in DNS ------------------------------------------------------------------------
    def _dns_server(self) -> DnsServer:
        if self._dns is None:
            from berth.network.dns import DnsServer  # dnspython: only once a user network is used

            self._dns = DnsServer(self)
        return self._dns

    def _user_net(self, view: dict[str, Any]) -> Network | None:
        n = self._nets.get(str(view.get("NetworkID") or ""))
        user = n is not None and n.driver in ("bridge", "overlay") and not n.predefined
        return n if user and view.get("IPAddress") else None

    def has_dns(self, container_id: str) -> bool:
        return self._dns is not None and self._dns.serving(container_id)

    def resolve(self, container_id: str, name: str) -> list[str] | None:
        """`Names.resolve`: name, alias, short id or hostname of a container, or `<that>.<network>`,
        on the user-defined networks the asker is on; its own legacy links' aliases too."""
        asker = self._live.get(container_id)
        if asker is None:
            return None
        mine = {n.id: n for v in asker.networks.values() if (n := self._user_net(v)) is not None}
        links = list(asker.host_config.get("Links") or ())
        for v in asker.networks.values():
            if self._user_net(v) is not None:
                links += v.get("Links") or []
        for link in links:
            child, alias = _parse_link(str(link))
            if name == alias.lower() and self.lookup is not None:
                try:
                    name = self.lookup(child).name.lower()
                except BerthError:
                    pass
        ips: list[str] = []
        for c in self._live.values():
            for view in c.networks.values():
                n = self._user_net(view)
                if n is None or n.id not in mine:
                    continue
                names = {x.lower() for x in dns_names(c, view)}
                suffix = "." + n.name.lower()
                if name in names or (name.endswith(suffix) and name[: -len(suffix)] in names):
                    ips.append(str(view["IPAddress"]))
                    if view.get("GlobalIPv6Address"):
                        ips.append(str(view["GlobalIPv6Address"]))
        for n in mine.values():  # overlay networks: the other engines' containers, from the store
            if n.driver == "overlay" and self.overlay is not None:
                suffix = "." + n.name.lower()
                for ep in self.overlay.remote(n.id):
                    names = {x.lower() for x in ep.names}
                    if name in names or (name.endswith(suffix) and name[: -len(suffix)] in names):
                        ips.append(ep.ip)
        return ips or None

    def reverse(self, container_id: str, ip: str) -> str | None:
        asker = self._live.get(container_id)
        if asker is None:
            return None
        mine = {n.id for v in asker.networks.values() if (n := self._user_net(v)) is not None}
        for c in self._live.values():
            for view in c.networks.values():
                n = self._user_net(view)
                if n is not None and n.id in mine and ip in (view.get("IPAddress"), view.get("GlobalIPv6Address")):
                    return f"{c.name}.{n.name}"
        for nid in mine:
            n = self._nets.get(nid)
            if n is not None and n.driver == "overlay" and self.overlay is not None:
                for ep in self.overlay.remote(nid):
                    if ep.ip == ip:
                        return f"{ep.name}.{n.name}"
        return None

    def upstreams(self, container_id: str) -> list[str]:
        """The container's `--dns` servers, else the host's; none on internal networks only."""
        c = self._live.get(container_id)
        if c is None:
            return []
        nets = [n for v in c.networks.values() if (n := self._user_net(v)) is not None]
        if nets and all(n.internal for n in nets):
            return []
        from berth.network.dns import host_nameservers

        return [str(s) for s in c.host_config.get("Dns") or ()] or host_nameservers()

    async def resume(self, containers: list[Container]) -> None:
        """After a daemon restart: the table and a resolver for every running container on a
        user-defined network (new sockets; the rule in its netns is rewritten for their ports)."""
        for c in containers:
            if not c.running or not any(self._user_net(v) for v in c.networks.values()):
                continue
            path = os.path.join(self.netns_dir, c.id)
            if not netns.exists(path):
                continue
            self._live[c.id] = c
            from berth.network.dns import open_sockets

            try:
                socks = await asyncio.to_thread(open_sockets, path, False)
                await self._dns_server().serve(c.id, socks)
            except (OSError, BerthError) as e:
                log.warning("built-in DNS of %s not restored: %s", c.id[:12], e)
        if self.overlay is not None:  # their overlay endpoints, under this daemon's lease
            running = [(c, n, v) for c in self._live.values() for v in c.networks.values()
                       if (n := self._user_net(v)) is not None and n.driver == "overlay"]
            await asyncio.to_thread(self.overlay.restore, running)

    # --- legacy links -----------------------------------------------------------------------------
    def register_links(self, c: Container) -> list[str] | None:
        """At create, as dockerd: each linked container must exist; on the default bridge the links
        are kept in dockerd's form `/child:/parent/alias`."""
        links = [str(x) for x in c.host_config.get("Links") or ()]
        if not links:
            return None
        mode = c.host_config.get("NetworkMode") or "default"
        if mode == "host":
            raise InvalidParameter("conflicting options: host type networking can't be used with links. "
                                   "This would result in undefined behavior")
        if mode not in ("default", "bridge") or self.lookup is None:
            return links
        out = []
        for link in links:
            name, alias = _parse_link(link)
            try:
                child = self.lookup(name)
            except NotFound:
                raise InvalidParameter(f"could not get container for {name}") from None
            out.append(f"/{child.name}:/{c.name}/{alias}")
        return out

    def _links(self, c: Container, nets: list[tuple[str, Network]]) -> tuple[list[tuple[str, str]], list[str]]:
        """/etc/hosts lines and environment of `--link name:alias` on the default bridge (on a
        user-defined network a link is an alias the built-in DNS answers for this container only)."""
        links = c.host_config.get("Links") or ()
        if not links or self.lookup is None:
            return [], []
        default = next((n for _, n in nets if n.predefined), None)
        hosts: list[tuple[str, str]] = []
        env: list[str] = []
        for link in links:
            name, alias = _parse_link(str(link))
            try:
                child = self.lookup(name)
            except NotFound:
                raise InvalidParameter(f"could not get container for {name}") from None
            if not child.running:
                raise InvalidParameter(f"Cannot link to a non running container: /{child.name} AS "
                                       f"/{c.name}/{alias}")
            if default is None:
                continue
            view = next((v for v in child.networks.values() if v.get("NetworkID") == default.id), None)
            if view is None or not view.get("IPAddress"):
                raise InvalidParameter(f"Cannot link to /{child.name}, as it does not belong to the default "
                                       "network")
            ip = str(view["IPAddress"])
            names = [alias, child.config.get("Hostname") or ""]
            if alias != child.name:
                names.append(child.name)
            hosts.append((" ".join(x for x in names if x), ip))
            env += link_env(alias, f"/{c.name}/{alias}", ip, list(child.config.get("ExposedPorts") or {}),
                            child.config.get("Env") or [])
        return hosts, env

    def link_target(self, parent: Container, alias: str) -> str:
        """The id of the container that `parent` links to as `alias` (docker's `/parent/alias`
        name); 404 as dockerd's name lookup when there is no such link."""
        for link in parent.host_config.get("Links") or ():
            child, a = _parse_link(str(link))
            if a == alias and self.lookup is not None:
                try:
                    return self.lookup(child).id
                except NotFound:
                    break
        raise NotFound(f"No such container: {parent.name}/{alias}")

    def unlink(self, parent: Container, alias: str) -> None:
        """`rm --link parent/alias`: the link goes from the parent's record (inspect's
        HostConfig.Links) and, as dockerd, from a running parent's /etc/hosts (its environment
        keeps the variables: a process's environment cannot change)."""
        self.link_target(parent, alias)
        keep = [x for x in parent.host_config.get("Links") or () if _parse_link(str(x))[1] != alias]
        parent.host_config["Links"] = keep or None
        if parent.running and self.container_dir is not None:
            _rewrite_hosts(os.path.join(self.container_dir(parent), "hosts"), [alias], None)

    def _update_parents(self, child: Container) -> None:
        """A linked container started with a new address on the default bridge: its running parents'
        /etc/hosts lines for it follow, as dockerd's `OptionParentUpdate` (line by first name)."""
        if self.all_containers is None or self.container_dir is None:
            return
        ip = next((str(v.get("IPAddress")) for k, v in child.networks.items()
                   if v.get("IPAddress") and (n := self._nets.get(str(v.get("NetworkID")))) and n.predefined), "")
        if not ip:
            return
        for parent in self.all_containers():
            if parent.id == child.id or not parent.running:
                continue
            aliases = [a for name, a in (_parse_link(str(x)) for x in parent.host_config.get("Links") or ())
                       if name == child.name]
            if aliases:
                _rewrite_hosts(os.path.join(self.container_dir(parent), "hosts"), aliases, ip)

    def close(self) -> None:
        """Daemon shutdown: port holds and netlink go; bridges, rules and netns stay (live restore)."""
        if self._dns is not None:
            self._dns.close()
        drv = self._driver
        close = getattr(drv, "close", None)
        if close is not None:
            close()
        try:
            netns.release_dir(self.netns_dir)  # only when no container's namespace is left in it
        except OSError as e:
            log.warning("could not release %s: %s", self.netns_dir, e)


def _rewrite_hosts(path: str, aliases: list[str], ip: str | None) -> None:
    """Give the lines whose first name is one of `aliases` the address `ip` (None: drop them). In
    place, not by rename: the file is bind-mounted into the container, which would keep the old
    inode."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines(keepends=True)
    except OSError:
        return
    out = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and fields[1] in aliases and not line.lstrip().startswith("#"):
            if ip is None:
                continue
            line = f"{ip}\t{' '.join(fields[1:])}\n"
        out.append(line)
    if out != lines:
        with open(path, "w", encoding="utf-8") as f:
            f.write("".join(out))


def _bridge_driver(prefix: str, overlay: bool = False) -> NetworkDriver:
    from berth.network.bridge import BridgeDriver  # pyroute2: only once a network is used
    from berth.network.iptables import Firewall

    return BridgeDriver(Firewall(prefix, accept_overlay=overlay))


def _net_id(c: Container, key: str) -> str:
    return str((c.networks.get(key) or {}).get("NetworkID") or "")


def _endpoint_id(ep: Endpoint) -> str:
    import hashlib

    return hashlib.sha256(f"{ep.container_id}/{ep.network_id}/{ep.host_ifname}".encode()).hexdigest()


def _mac_opt(view: dict[str, Any] | None, ip: IPv4Address) -> str | None:
    """The driver's `mac` when the endpoint asks for its own MAC address."""
    mac = str((view or {}).get("MacAddress") or "")
    return mac if mac and mac != mac_for_ip(ip) else None


def _parse_link(link: str) -> tuple[str, str]:
    """`name:alias`, `name`, or dockerd's stored form `/name:/parent/alias` -> (name, alias)."""
    name, _, alias = link.partition(":")
    name = name.strip("/")
    alias = alias.rsplit("/", 1)[-1] if alias else name
    return name, alias


def link_env(alias: str, link_name: str, ip: str, exposed: list[str], child_env: list[str]) -> list[str]:
    """docker's legacy link variables (moby daemon/links/links.go `ToEnv`)."""
    prefix = alias.upper().replace("-", "_")
    ports: list[tuple[int, str]] = []
    for key in exposed:
        p, _, proto = str(key).partition("/")
        if p.isdigit():
            ports.append((int(p), (proto or "tcp").lower()))
    ports.sort(key=lambda x: (x[0], x[1] != "tcp"))
    env: list[str] = []
    if ports:
        p0, proto0 = ports[0]
        env.append(f"{prefix}_PORT={proto0}://{ip}:{p0}")
    i = 0
    while i < len(ports):
        j = i
        while j + 1 < len(ports) and ports[j + 1][0] == ports[j][0] + 1:
            j += 1
        if j > i + 1:
            (start, sproto), (end, eproto) = ports[i], ports[j]
            head = f"{prefix}_PORT_{start}_{sproto.upper()}"
            env += [f"{head}_START={sproto}://{ip}:{start}", f"{head}_ADDR={ip}", f"{head}_PROTO={sproto}",
                    f"{head}_PORT_START={start}",
                    f"{prefix}_PORT_{start}_{eproto.upper()}_END={eproto}://{ip}:{end}",
                    f"{prefix}_PORT_{start}_{eproto.upper()}_PORT_END={end}"]
            i = j + 1
        else:
            i += 1
    for num, proto in ports:
        head = f"{prefix}_PORT_{num}_{proto.upper()}"
        env += [f"{head}={proto}://{ip}:{num}", f"{head}_ADDR={ip}", f"{head}_PORT={num}", f"{head}_PROTO={proto}"]
    env.append(f"{prefix}_NAME={link_name}")
    for var in child_env:
        key, eq, value = var.partition("=")
        if eq and key not in ("HOME", "PATH"):
            env.append(f"{prefix}_ENV_{key}={value}")
    return env


def dns_names(c: Container, view: dict[str, Any]) -> list[str]:
    """docker's DNSNames of an endpoint: name, aliases, short id, hostname (deduplicated)."""
    out: list[str] = []
    for x in [c.name, *(view.get("Aliases") or []), c.id[:12], c.config.get("Hostname") or ""]:
        if x and x not in out:
            out.append(str(x))
    return out


def _port_key(key: str) -> tuple[int, str]:
    port, _, proto = str(key).partition("/")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidParameter(f"invalid port specification: {key!r}")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp"):
        raise InvalidParameter(f"invalid protocol {proto!r} in port {key!r}")
    return int(port), proto


def endpoint_view(network_id: str = "") -> dict[str, Any]:
    return {"IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "", "NetworkID": network_id,
            "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "",
            "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DriverOpts": None, "DNSNames": None}


def _apply_endpoint_config(ep: dict[str, Any], cfg: dict[str, Any], n: Network | None) -> None:
    """An EndpointSettings of the API into the container's view of network `n` (None: only the
    MAC address, from `Config.MacAddress`)."""
    if not isinstance(cfg, dict):
        raise InvalidParameter("EndpointConfig must be an object")
    ipam = cfg.get("IPAMConfig") or {}
    for key, v6 in (("IPv4Address", False), ("IPv6Address", True)):
        if not (ipam and isinstance(ipam, dict) and ipam.get(key)) or n is None:
            continue
        if n.predefined:
            raise InvalidParameter("user specified IP address is supported on user defined networks only")
        if not n.user_subnet(v6):
            raise InvalidParameter("user specified IP address is supported only when connecting to networks "
                                   "with user configured subnets")
        try:
            addr = ip_address(str(ipam[key]))
        except ValueError:
            raise InvalidParameter(f"invalid {key} {ipam[key]!r}") from None
        if (addr.version == 6) != v6:
            raise InvalidParameter(f"invalid {key} {ipam[key]!r}")
        ep["IPAMConfig"] = dict(ep.get("IPAMConfig") or {}, **{key: str(addr)})
    if ipam and isinstance(ipam, dict) and ipam.get("LinkLocalIPs"):
        # recorded as dockerd does; berth adds no link-local addresses
        ep["IPAMConfig"] = dict(ep["IPAMConfig"] or {}, LinkLocalIPs=[str(x) for x in ipam["LinkLocalIPs"]])
    if cfg.get("Aliases"):
        ep["Aliases"] = [str(a) for a in cfg["Aliases"]]
    if cfg.get("Links"):  # on a user-defined network: aliases only this container resolves
        ep["Links"] = [str(x) for x in cfg["Links"]]
    if isinstance(cfg.get("DriverOpts"), dict) and cfg["DriverOpts"]:
        ep["DriverOpts"] = {str(k): str(v) for k, v in cfg["DriverOpts"].items()}
    mac = cfg.get("MacAddress")
    if mac:
        if not re.fullmatch(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}", str(mac)):
            raise InvalidParameter(f"invalid MAC address: {mac}")
        ep["MacAddress"] = str(mac).lower()


def _split_families(configs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """IPAM.Config entries -> (the IPv4 one, the IPv6 one), each possibly empty; one of each at
    most. An entry without a subnet is IPv4 unless its gateway or range says IPv6."""
    v4: list[dict[str, Any]] = []
    v6: list[dict[str, Any]] = []
    for c in configs:
        probe = str(c.get("Subnet") or c.get("Gateway") or c.get("IPRange") or "")
        (v6 if ":" in probe else v4).append(c)
    if len(v4) > 1 or len(v6) > 1:
        raise InvalidParameter("berth supports one IPv4 and one IPv6 subnet per network")
    return (v4[0] if v4 else {}), (v6[0] if v6 else {})


def _host_port_range(text: str) -> tuple[int, int]:
    """A PortBindings HostPort: "" (any free port), "8080", or "8000-8010" (the first free one of
    the range, as dockerd's port allocator) -> (first, last or 0)."""
    text = text.strip()
    if not text:
        return 0, 0
    lo, sep, hi = text.partition("-")
    if not lo.isdigit() or (sep and not hi.isdigit()):
        raise InvalidParameter(f"invalid host port {text!r}")
    first, last = int(lo), int(hi) if sep else 0
    if not 0 <= first <= 65535 or (sep and not first <= last <= 65535):
        raise InvalidParameter(f"invalid host port range {text!r}")
    return first, (last if last != first else 0)


def ports_view(c: Container, published: tuple[PortBinding, ...]) -> dict[str, Any]:
    """NetworkSettings.Ports: every exposed port, with its host bindings or null."""
    out: dict[str, Any] = {str(k) if "/" in str(k) else f"{k}/tcp": None
                           for k in (c.config.get("ExposedPorts") or {})}
    for p in published:
        out.setdefault(f"{p.container_port}/{p.proto}", None)
        key = f"{p.container_port}/{p.proto}"
        out[key] = (out[key] or []) + [{"HostIp": p.host_ip, "HostPort": str(p.host_port)}]
    return out
