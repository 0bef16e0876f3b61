"""What the parts of the network service share: network records, IPAM state and endpoint rows
in SQLite, the bridge driver, and the daemon's hooks (overlay service, container lookups).

Owns three SQLite tables (`networks`, `network_ipam`, `network_endpoints`). An endpoint row
records a container's address on a network from its first start (or `network connect`) until it
is removed or disconnected, and its endpoint (veth, published ports) while it runs, so that
`recover` can hand it back to the driver after a daemon crash.

The bridge driver (pyroute2, ~150 ms to import) is loaded on first use: a daemon that never
starts a networked container never imports it. Its calls block: call them in a worker thread.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from typing import TYPE_CHECKING, Any

from berth.common.db import Database
from berth.common.errors import InvalidParameter, NotFound
from berth.common.ids import new_id
from berth.network.ipam import Ipam, host_routes
from berth.network.model import Endpoint, NetworkConfig, NetworkDriver

from .events import EventBus
from .model import Container, now_rfc3339

if TYPE_CHECKING:
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
    scope: str = ""  # "swarm": a swarm mode overlay (swarm.py), realised here as a local bridge
    ingress: bool = False  # the swarm's routing-mesh network (recorded: berth runs no services)

    def to_record(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_record(cls, d: dict[str, Any]) -> Network:
        return cls(**d)

    @property
    def predefined(self) -> bool:
        return self.name in PREDEFINED

    @property
    def scope_view(self) -> str:
        """inspect's Scope: a cluster store's overlay is global, a swarm's swarm, the rest local."""
        return self.scope or ("global" if self.driver == "overlay" else "local")

    @property
    def swarm_local(self) -> bool:
        """A swarm mode overlay: on a single-node swarm it has no peers, so a local bridge realises it."""
        return self.driver == "overlay" and self.scope == "swarm"

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


class NetworkState:
    def __init__(self, db: Database, exec_root: str, events: EventBus, opts: NetworkSettingsOptions,
                 driver_factory: Callable[[str], NetworkDriver] | None = None) -> None:
        self.db = db
        self.events = events
        self.opts = opts
        self.netns_dir = os.path.join(exec_root, "netns")
        self._driver_factory = driver_factory or (lambda prefix: _bridge_driver(prefix, self.overlay is not None))
        self._driver: NetworkDriver | None = None
        self._driver_lock = threading.Lock()
        self.ipam = Ipam(self.opts.pools)
        self.nets: dict[str, Network] = {}
        # Set by the daemon: containers by name or id (legacy links name other containers), all
        # of them, and a container's directory (its /etc/hosts, which links rewrite).
        self.lookup: Callable[[str], Container] | None = None
        self.all_containers: Callable[[], list[Container]] | None = None
        self.container_dir: Callable[[Container], str] | None = None
        # Overlay networks (records in the cluster store), set by the daemon with --cluster-store.
        self.overlay: OverlayService | None = None
        db.ensure_schema(SCHEMA)
        for row in db.query("SELECT record FROM networks"):
            n = Network.from_record(json.loads(row["record"]))
            self.nets[n.id] = n
        rows = db.query("SELECT state FROM network_ipam WHERE key='ipam'")
        if rows:
            self.ipam.load(json.loads(rows[0]["state"]))
        self._ensure_predefined()

    def save_net(self, n: Network) -> None:
        with self.db.tx() as tx:
            tx.execute("INSERT OR REPLACE INTO networks(id, name, record) VALUES (?,?,?)",
                       (n.id, n.name, json.dumps(n.to_record())))
            tx.execute("INSERT OR REPLACE INTO network_ipam(key, state) VALUES ('ipam', ?)",
                       (json.dumps(self.ipam.to_dict()),))

    def save_ipam(self) -> None:
        with self.db.tx() as tx:
            tx.execute("INSERT OR REPLACE INTO network_ipam(key, state) VALUES ('ipam', ?)",
                       (json.dumps(self.ipam.to_dict()),))

    def _ensure_predefined(self) -> None:
        have = {n.name for n in self.nets.values()}
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
            self.nets[n.id] = n
            self.save_net(n)

    def all(self) -> list[Network]:
        return list(self.nets.values())

    def set_overlay_networks(self, nets: list[Network]) -> None:
        """The cluster's overlay networks now (from the store's watch): kept beside the local ones,
        in memory only."""
        ids = {n.id for n in nets}
        for nid in [k for k, n in self.nets.items() if n.driver == "overlay" and not n.swarm_local and k not in ids]:
            del self.nets[nid]
        for n in nets:
            self.nets[n.id] = n

    def get(self, ref: str) -> Network:
        """By full id, name, or unique id prefix, as dockerd resolves networks."""
        if ref in self.nets:
            return self.nets[ref]
        for n in self.nets.values():
            if n.name == ref:
                return n
        matches = [n for n in self.nets.values() if n.id.startswith(ref)] if ref else []
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidParameter(f"network {ref} is ambiguous ({len(matches)} matches found based on ID "
                                   "prefix)")
        raise NotFound(f"network {ref} not found")

    def driver_now(self) -> NetworkDriver:
        """The bridge driver, loaded and restored on first use (blocking: call in a thread)."""
        with self._driver_lock:
            if self._driver is None:
                drv = self._driver_factory(self.opts.iptables_prefix)
                warnings = drv.restore(self._bridge_configs(), self.connected_endpoints())
                for w in warnings:
                    log.warning("published port not restored: %s", w)
                self._driver = drv
            return self._driver

    def _bridge_configs(self) -> list[NetworkConfig]:
        return [n.config(self.ipam) for n in self.nets.values() if n.driver == "bridge" or n.swarm_local]

    def endpoint_rows(self, container_id: str | None = None) -> list[dict[str, Any]]:
        if container_id is None:
            rows = self.db.query("SELECT record FROM network_endpoints")
        else:
            rows = self.db.query("SELECT record FROM network_endpoints WHERE container_id=?", (container_id,))
        return [json.loads(r["record"]) for r in rows]

    def connected_endpoints(self) -> list[Endpoint]:
        return [Endpoint.from_dict(r["endpoint"]) for r in self.endpoint_rows() if r.get("endpoint")]

    def save_ep(self, rec: dict[str, Any]) -> None:
        with self.db.tx() as tx:
            tx.execute("INSERT OR REPLACE INTO network_endpoints(container_id, network_id, record) VALUES (?,?,?)",
                       (rec["container_id"], rec["network_id"], json.dumps(rec)))

    def del_ep(self, container_id: str, network_id: str) -> None:
        with self.db.tx() as tx:
            tx.execute("DELETE FROM network_endpoints WHERE container_id=? AND network_id=?",
                       (container_id, network_id))

    def delete_endpoints(self, container_id: str) -> None:
        """A removed container's rows, with the IPAM state that has its addresses back."""
        with self.db.tx() as tx:
            tx.execute("DELETE FROM network_endpoints WHERE container_id=?", (container_id,))
            tx.execute("INSERT OR REPLACE INTO network_ipam(key, state) VALUES ('ipam', ?)",
                       (json.dumps(self.ipam.to_dict()),))

    def delete_network(self, network_id: str) -> None:
        """A removed network's record and endpoint rows, with the IPAM state without it."""
        with self.db.tx() as tx:
            tx.execute("DELETE FROM networks WHERE id=?", (network_id,))
            tx.execute("DELETE FROM network_endpoints WHERE network_id=?", (network_id,))
            tx.execute("INSERT OR REPLACE INTO network_ipam(key, state) VALUES ('ipam', ?)",
                       (json.dumps(self.ipam.to_dict()),))

    def by_name(self, name: str) -> Network | None:
        return next((n for n in self.nets.values() if n.name == name), None)

    def user_net(self, view: dict[str, Any]) -> Network | None:
        """The user-defined network of a container's endpoint view, if it has an address there."""
        n = self.nets.get(str(view.get("NetworkID") or ""))
        user = n is not None and n.driver in ("bridge", "overlay") and not n.predefined
        return n if user and view.get("IPAddress") else None

    def close_driver(self) -> None:
        """Port holds and netlink go (a driver that was never loaded has none)."""
        close = getattr(self._driver, "close", None)
        if close is not None:
            close()


def _bridge_driver(prefix: str, overlay: bool = False) -> NetworkDriver:
    from berth.network.bridge import BridgeDriver  # pyroute2: only once a network is used
    from berth.network.iptables import Firewall

    return BridgeDriver(Firewall(prefix, accept_overlay=overlay))
