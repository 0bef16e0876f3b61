"""Overlay networks shared by the engines of one cluster store (etcd): records, allocation, peers.

Keys, under `/berth/overlay/`:
  alloc                      {"names", "vnis", "subnets"}: what is taken, each mapped to a network id;
                             a network is created or removed by one transaction that compares this
                             key's revision (compare-and-swap), so no two networks share a name,
                             VNI or subnet
  networks/<id>              the network record (`Network.to_record()`; its VNI in Options, as docker's
                             `com.docker.network.driver.overlay.vxlanid_list`)
  ipam/<id>/<ip>             a container's address, taken by create-if-absent; kept from the first start
                             to the container's removal, as on bridge networks
  endpoints/<id>/<container> a running container's endpoint (names, IP, MAC, VTEP, engine), put under
                             this engine's lease: when an engine dies its endpoints vanish with it

Every engine watches the prefix from a thread; on any change it re-reads the network records and
endpoints whole (idempotent reconciliation, also done at start and after a lost watch), hands the
networks to the network service, programs the VXLAN forwarding entries of the networks realised
here (`OverlayDriver.set_peers`), and answers the built-in DNS for the other engines' containers
from that snapshot. It also puts back this engine's own endpoints when they are missing (a lease
that expired while the engine was frozen).

A container on an overlay network only has the overlay there: no default route and no published
ports through it (docker adds a `docker_gwbridge` endpoint for the outside; berth does not, so a
container that must reach the outside joins a bridge network as well).

etcd calls block: callers on the event loop run them in threads, except the few allocation calls
on the start path, which take a few milliseconds against a reachable store.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address
from typing import TYPE_CHECKING, Any

from berth.common.errors import BerthError, Conflict, InvalidParameter, NotFound, SystemError_
from berth.common.ids import new_id
from berth.etcd import EtcdClient, EtcdError, LeaseKeeper
from berth.etcd.client import cmp_mod_revision, op_delete, op_put
from berth.network.model import Endpoint, PortBinding

from .model import Container, now_rfc3339
from .network_state import Network
from .network_views import dns_names

if TYPE_CHECKING:
    from berth.network.overlay import OverlayConfig, OverlayDriver

log = logging.getLogger("berth.overlay")

PREFIX = "/berth/overlay/"
ALLOC_KEY = PREFIX + "alloc"
VNI_OPT = "com.docker.network.driver.overlay.vxlanid_list"
FIRST_VNI = 4096  # docker's overlay VNIs start here
MAX_VNI = (1 << 24) - 1
DEFAULT_POOL = IPv4Network("10.209.0.0/16")  # overlay subnets without --subnet: a /24 each
POOL_SIZE = 24
CAS_TRIES = 20


@contextmanager
def store_errors(what: str) -> Iterator[None]:
    """An unreachable or failing store becomes an API error (500) naming what could not be done."""
    try:
        yield
    except EtcdError as e:
        raise SystemError_(f"{what}: cluster store: {e.message}") from None


def parse_store(url: str) -> list[str]:
    """`etcd://HOST:PORT[,HOST:PORT]` (docker's --cluster-store) -> the gateway's http endpoints."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme != "etcd" or not rest.strip("/"):
        raise ValueError(f"unsupported cluster store {url!r}: want etcd://HOST:PORT[,HOST:PORT]")
    return [f"http://{h.strip()}" for h in rest.strip("/").split(",") if h.strip()]


def net_key(network_id: str) -> str:
    return f"{PREFIX}networks/{network_id}"


def ip_prefix(network_id: str) -> str:
    return f"{PREFIX}ipam/{network_id}/"


def ep_prefix(network_id: str) -> str:
    return f"{PREFIX}endpoints/{network_id}/"


@dataclass(frozen=True)
class RemoteEndpoint:
    """An endpoint as published in the store (by any engine, this one included)."""

    network_id: str
    container_id: str
    name: str
    names: tuple[str, ...]
    ip: str
    mac: str
    vtep: str
    engine: str

    @classmethod
    def from_record(cls, network_id: str, d: dict[str, Any]) -> RemoteEndpoint:
        return cls(network_id, str(d["container_id"]), str(d.get("name", "")),
                   tuple(str(x) for x in d.get("names") or ()), str(d["ip"]), str(d["mac"]), str(d["vtep"]),
                   str(d.get("engine", "")))


class OverlayService:
    """This engine's side of the cluster's overlay networks. `engine` names this engine in its
    endpoints (its engine id); `vtep` is its `--cluster-advertise` address."""

    def __init__(self, etcd: EtcdClient, vtep: IPv4Address, engine: str, ttl: int = 15,
                 driver_factory: Callable[[IPv4Address], OverlayDriver] | None = None) -> None:
        self.etcd = etcd
        self.vtep = vtep
        self.engine = engine
        self.ttl = ttl
        self._driver_factory = driver_factory
        self._driver: OverlayDriver | None = None
        self._lock = threading.RLock()
        # Snapshots replaced whole by the watch thread (reads need no lock).
        self.networks: dict[str, Network] = {}
        self.endpoints: dict[str, list[RemoteEndpoint]] = {}
        self._mine: dict[tuple[str, str], dict[str, Any]] = {}  # (network, container) -> published record
        self._keeper = LeaseKeeper(etcd, ttl, on_new_lease=self._republish)
        self._leased = False
        self._synced = False  # a snapshot of the store was read
        self._stop = threading.Event()
        self._stream: Any = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Set by the network service: the overlay networks now known (called on the event loop).
        self.on_networks: Callable[[list[Network]], None] | None = None

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Blocking: the lease and a first snapshot (a store down at start only logs: the watch
        thread keeps trying), then the watch thread."""
        self._loop = loop
        try:
            self._ensure_lease()
            self.resync()
        except EtcdError as e:
            log.warning("cluster store unavailable at start (retrying in the background): %s", e)
        self._thread = threading.Thread(target=self._watch, name="overlay-watch", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Daemon shutdown: the lease is not revoked (containers keep running; their endpoints
        stay until the lease runs out or the next berthd puts them again under its own)."""
        self._stop.set()
        stream = self._stream
        if stream is not None:
            stream.close()
        if self._thread is not None:
            self._thread.join(5)
        self._keeper.stop(revoke=False)
        if self._driver is not None:
            self._driver.close()

    def _ensure_lease(self) -> int:
        with self._lock:
            if not self._leased:
                self._keeper.start()
                self._leased = True
            return self._keeper.lease

    def driver(self) -> OverlayDriver:
        with self._lock:
            if self._driver is None:
                if self._driver_factory is not None:
                    self._driver = self._driver_factory(self.vtep)
                else:
                    from berth.network.overlay import OverlayDriver  # pyroute2: only once used

                    self._driver = OverlayDriver(self.vtep)
            return self._driver

    # --- networks ----------------------------------------------------------------------------
    def create(self, body: dict[str, Any]) -> Network:
        """Blocking: a new network in the store, its name, VNI and subnet taken atomically."""
        with store_errors("network not created"):
            return self._create(body)

    def _create(self, body: dict[str, Any]) -> Network:
        name = str(body["Name"])
        ipam = body.get("IPAM") or {}
        configs = [c for c in (ipam.get("Config") or []) if isinstance(c, dict)]
        if body.get("EnableIPv6") or len(configs) > 1:
            raise InvalidParameter("overlay networks take one IPv4 subnet (no IPv6 yet)")
        cfg = configs[0] if configs else {}
        if cfg.get("IPRange") or cfg.get("AuxiliaryAddresses"):
            raise InvalidParameter("overlay networks take --subnet and --gateway only")
        options = {str(k): str(v) for k, v in (body.get("Options") or {}).items()}
        wanted_vni = _parse_vni(options.get(VNI_OPT))
        try:
            wanted = IPv4Network(str(cfg["Subnet"])) if cfg.get("Subnet") else None
            gw = IPv4Address(str(cfg["Gateway"])) if cfg.get("Gateway") else None
        except ValueError as e:
            raise InvalidParameter(f"invalid subnet or gateway: {e}") from None
        for _ in range(CAS_TRIES):
            kv = self.etcd.get(ALLOC_KEY)
            alloc = kv.json() if kv else {}
            names: dict[str, str] = alloc.get("names", {})
            vnis: dict[str, str] = alloc.get("vnis", {})
            subnets: dict[str, str] = alloc.get("subnets", {})
            if name in names:
                raise Conflict(f"network with name {name} already exists")
            vni = wanted_vni or next(v for v in range(FIRST_VNI, MAX_VNI) if str(v) not in vnis)
            if str(vni) in vnis:
                raise Conflict(f"VXLAN id {vni} is already used by another overlay network")
            taken = [IPv4Network(s) for s in subnets]
            subnet = wanted or _free_subnet(taken)
            if any(subnet.overlaps(t) for t in taken):
                raise Conflict("invalid pool request: Pool overlaps with other one on this address space")
            gateway = gw or next(subnet.hosts())
            if gateway not in subnet or gateway in (subnet.network_address, subnet.broadcast_address):
                raise InvalidParameter(f"gateway {gateway} is not a host address of subnet {subnet}")
            nid = new_id()
            n = Network(nid, name, "overlay", now_rfc3339(), internal=bool(body.get("Internal")),
                        attachable=bool(body.get("Attachable")), options={**options, VNI_OPT: str(vni)},
                        labels={str(k): str(v) for k, v in (body.get("Labels") or {}).items()},
                        ipam_config=[{"Subnet": str(subnet), "Gateway": str(gateway)}], bridge=f"ov-{nid[:12]}")
            new_alloc = {"names": {**names, name: nid}, "vnis": {**vnis, str(vni): nid},
                         "subnets": {**subnets, str(subnet): nid}}
            ok, _ = self.etcd.txn([cmp_mod_revision(ALLOC_KEY, kv.mod_revision if kv else 0)],
                                  [op_put(ALLOC_KEY, json.dumps(new_alloc)),
                                   op_put(net_key(nid), json.dumps(n.to_record()))])
            if ok:
                self.networks = {**self.networks, nid: n}
                return n
        raise SystemError_("the cluster store kept changing: network not created, try again")

    def remove(self, n: Network) -> None:
        """Blocking: refused while any engine has an endpoint on it; its addresses go with it."""
        with store_errors("network not removed"):
            self._remove(n)

    def _remove(self, n: Network) -> None:
        eps = self.etcd.get_prefix(ep_prefix(n.id))
        if eps:
            names = sorted({str(kv.json().get("name", "")) for kv in eps})
            raise Conflict(f"error while removing network: network {n.name} id {n.id} has active endpoints "
                           f"({', '.join(names)})")
        for _ in range(CAS_TRIES):
            kv = self.etcd.get(ALLOC_KEY)
            alloc = kv.json() if kv else {}
            left = {k: {x: i for x, i in alloc.get(k, {}).items() if i != n.id} for k in ("names", "vnis", "subnets")}
            ok, _ = self.etcd.txn([cmp_mod_revision(ALLOC_KEY, kv.mod_revision if kv else 0)],
                                  [op_put(ALLOC_KEY, json.dumps(left)), op_delete(net_key(n.id)),
                                   op_delete(ip_prefix(n.id), prefix=True), op_delete(ep_prefix(n.id), prefix=True)])
            if ok:
                self.networks = {k: v for k, v in self.networks.items() if k != n.id}
                if self._driver is not None:
                    self._driver.delete_network(n.id)
                return
        raise SystemError_("the cluster store kept changing: network not removed, try again")

    def config(self, network_id: str) -> OverlayConfig:
        from berth.network.overlay import OverlayConfig

        n = self.networks.get(network_id)
        if n is None:
            raise NotFound(f"network {network_id} not found")
        cfg = n.ipam_config[0]
        return OverlayConfig(n.id, int(n.options[VNI_OPT]), IPv4Network(cfg["Subnet"]), IPv4Address(cfg["Gateway"]))

    # --- addresses -----------------------------------------------------------------------------
    def allocate(self, network_id: str, container_id: str, wanted: str | None = None) -> IPv4Address:
        """Blocking: an address of the network, taken in the store by create-if-absent."""
        with store_errors("no address allocated"):
            return self._allocate(network_id, container_id, wanted)

    def _allocate(self, network_id: str, container_id: str, wanted: str | None) -> IPv4Address:
        cfg = self.config(network_id)
        if wanted:
            try:
                ip = IPv4Address(wanted)
            except ValueError:
                raise InvalidParameter(f"invalid IPv4Address {wanted!r}") from None
            if ip not in cfg.subnet or ip in (cfg.gateway, cfg.subnet.network_address, cfg.subnet.broadcast_address):
                raise InvalidParameter(f"invalid address {ip}: it is not a free host address of {cfg.subnet}")
            if not self.etcd.create(ip_prefix(network_id) + str(ip), container_id):
                raise Conflict(f"Address already in use: {ip}")
            return ip
        taken = {kv.key.decode().rsplit("/", 1)[1] for kv in self.etcd.get_prefix(ip_prefix(network_id))}
        for ip in cfg.subnet.hosts():
            if ip == cfg.gateway or str(ip) in taken:
                continue
            if self.etcd.create(ip_prefix(network_id) + str(ip), container_id):
                return ip
        raise Conflict(f"no address left on network {network_id[:12]} ({cfg.subnet})")

    def release(self, network_id: str, ip: IPv4Address) -> None:
        try:
            self.etcd.delete(ip_prefix(network_id) + str(ip))
        except EtcdError as e:
            log.warning("address %s of overlay network %s not released: %s", ip, network_id[:12], e)

    # --- endpoints -----------------------------------------------------------------------------
    def connect(self, container_id: str, network_id: str, netns: str, ifname: str, ip: IPv4Address,
                ports: tuple[PortBinding, ...] = (), default_route: bool = True, mac: str | None = None,
                ip6: IPv6Address | None = None) -> Endpoint:
        """Blocking, `NetworkDriver.connect`'s shape: the network realised here, the veth, and the
        peers known now programmed (the others arrive through the watch)."""
        if ports:
            raise InvalidParameter("ports cannot be published on an overlay network: connect the container to a "
                                   "bridge network first (berth gives overlay containers no way out of their own)")
        drv = self.driver()
        if network_id not in drv.networks():  # realised on first use (idempotent, but ~5 ms of netlink)
            drv.create_network(self.config(network_id))
        try:
            ep = drv.connect(container_id, network_id, netns, ifname, ip, mac)
        except FileNotFoundError:  # its bridge went behind our back: make it again
            drv.create_network(self.config(network_id))
            ep = drv.connect(container_id, network_id, netns, ifname, ip, mac)
        drv.set_peers(network_id, self._peers(network_id))
        return ep

    def publish(self, c: Container, n: Network, view: dict[str, Any]) -> None:
        """Blocking: the running container's endpoint on `n`, under this engine's lease."""
        rec = {"container_id": c.id, "name": c.name, "names": dns_names(c, view), "ip": view["IPAddress"],
               "mac": view["MacAddress"], "vtep": str(self.vtep), "engine": self.engine}
        with self._lock:
            self._mine[(n.id, c.id)] = rec
        try:
            self.etcd.put(ep_prefix(n.id) + c.id, json.dumps(rec), lease=self._ensure_lease())
        except EtcdError as e:  # the next resync puts it (it is in `_mine`)
            log.warning("endpoint of %s on %s not published yet: %s", c.id[:12], n.name, e)

    def withdraw(self, container_id: str, network_id: str | None = None) -> None:
        """Blocking: the container's endpoints (on one network, or all) leave the store."""
        with self._lock:
            keys = [k for k in self._mine if k[1] == container_id and network_id in (None, k[0])]
            for k in keys:
                del self._mine[k]
        for nid, cid in keys:
            try:
                self.etcd.delete(ep_prefix(nid) + cid)
            except EtcdError as e:  # the lease takes it when the store is back and this engine gone
                log.warning("endpoint of %s on %s not withdrawn: %s", cid[:12], nid[:12], e)

    def restore(self, running: list[tuple[Container, Network, dict[str, Any]]]) -> None:
        """Blocking, at daemon start: the networks of still-running containers realised again in the
        driver's view, and their endpoints put under this daemon's lease; the devices of networks
        removed meanwhile go."""
        if self._synced:  # the store answered: what it does not list is gone
            try:
                for name in self.driver().sweep(set(self.networks)):
                    log.info("removed %s: its overlay network is gone from the cluster", name)
            except OSError as e:
                log.warning("stale overlay devices not removed: %s", e)
        for c, n, view in running:
            try:
                self.driver().create_network(self.config(n.id))
                self.publish(c, n, view)
            except (BerthError, EtcdError, OSError) as e:
                log.warning("overlay endpoint of %s on %s not restored: %s", c.id[:12], n.name, e)
        self._program()

    def remote(self, network_id: str) -> list[RemoteEndpoint]:
        """The other engines' endpoints on the network (what the built-in DNS adds)."""
        return [e for e in self.endpoints.get(network_id, ()) if e.engine != self.engine]

    def peers_view(self, network_id: str) -> list[dict[str, str]]:
        """inspect's `Peers` (engines with endpoints on the network), as swarm mode shows them."""
        seen: dict[str, str] = {}
        for e in self.endpoints.get(network_id, ()):
            seen.setdefault(e.vtep, e.engine)
        return [{"Name": eng, "IP": ip} for ip, eng in sorted(seen.items())]

    def _peers(self, network_id: str) -> list[Any]:
        from berth.network.overlay import Peer

        return [Peer(IPv4Address(e.ip), e.mac, IPv4Address(e.vtep)) for e in self.endpoints.get(network_id, ())]

    # --- reconciliation --------------------------------------------------------------------------
    def _republish(self, lease: int) -> None:
        """A new lease (start, or the old one lost): put this engine's endpoints under it."""
        with self._lock:
            mine = list(self._mine.items())
        for (nid, cid), rec in mine:
            self.etcd.put(ep_prefix(nid) + cid, json.dumps(rec), lease=lease)

    def resync(self) -> None:
        """Blocking: read the networks and endpoints whole, and make everything here follow."""
        nets: dict[str, Network] = {}
        for kv in self.etcd.get_prefix(PREFIX + "networks/"):
            n = Network.from_record(kv.json())
            nets[n.id] = n
        eps: dict[str, list[RemoteEndpoint]] = {}
        for kv in self.etcd.get_prefix(PREFIX + "endpoints/"):
            nid = kv.key.decode()[len(PREFIX + "endpoints/"):].split("/", 1)[0]
            eps.setdefault(nid, []).append(RemoteEndpoint.from_record(nid, kv.json()))
        self.networks, self.endpoints = nets, eps
        self._synced = True
        loop, notify = self._loop, self.on_networks
        if loop is not None and notify is not None:
            loop.call_soon_threadsafe(notify, list(nets.values()))
        with self._lock:
            missing = [(k, rec) for k, rec in self._mine.items()
                       if k[0] in nets and not any(e.container_id == k[1] for e in eps.get(k[0], ()))]
        if missing:  # our lease ran out (a frozen engine) and the keeper granted a new one
            lease = self._ensure_lease()
            for (nid, cid), rec in missing:
                self.etcd.put(ep_prefix(nid) + cid, json.dumps(rec), lease=lease)
        self._program()

    def _program(self) -> None:
        """The VXLAN entries of every network realised here; the devices of removed ones go."""
        drv = self._driver
        if drv is None:
            return
        for nid in drv.networks():
            try:
                if nid not in self.networks:
                    drv.delete_network(nid)
                else:
                    drv.set_peers(nid, self._peers(nid))
            except (BerthError, OSError) as e:
                log.warning("overlay network %s not reprogrammed: %s", nid[:12], e)

    def _watch(self) -> None:
        """Watch the prefix; every change (and every new watch) triggers a whole resync."""
        while not self._stop.is_set():
            try:
                self._ensure_lease()
                stream, _ = self.etcd.watch(PREFIX, prefix=True)
                self._stream = stream
                if self._stop.is_set():
                    stream.close()
                    return
                for msg in stream.messages():
                    if msg.get("canceled"):
                        break
                    if msg.get("created") or msg.get("events"):
                        self.resync()
            except Exception as e:  # noqa: BLE001 - the watch must outlive a store outage or a fault
                if not self._stop.is_set():
                    log.warning("overlay watch interrupted: %s", e)
            finally:
                if self._stream is not None:
                    self._stream.close()
                    self._stream = None
            self._stop.wait(1.0)


def _parse_vni(text: str | None) -> int | None:
    if not text:
        return None
    first = text.split(",", 1)[0].strip()
    if not first.isdigit() or not 1 <= int(first) <= MAX_VNI:
        raise InvalidParameter(f"invalid {VNI_OPT} {text!r}: want a VXLAN id between 1 and {MAX_VNI}")
    return int(first)


def _free_subnet(taken: list[IPv4Network]) -> IPv4Network:
    for s in DEFAULT_POOL.subnets(new_prefix=POOL_SIZE):
        if not any(s.overlaps(t) for t in taken):
            return s
    raise Conflict(f"no overlay subnet left in {DEFAULT_POOL}: give one with --subnet")
