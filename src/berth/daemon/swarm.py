"""Single-node swarm mode: `swarm init/leave`, `GET /swarm`, this node, and `/info`'s Swarm block.

berth runs no raft, no orchestrator and no other node: a swarm here is one manager, itself, so
that what needs swarm mode on one engine works as on dockerd: swarm-scoped overlay networks
(node-local, realised by the bridge driver since there are no peers; see networks.py), with the
`ingress` network dockerd makes at init. Services, tasks, secrets and configs are answered as not
implemented (501); berth's multi-host answer is its cluster. Joining another swarm is refused.

The state is one row in SQLite (`swarm`): present while the node is in a swarm, kept across restarts.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import secrets
import socket
import struct
from ipaddress import ip_address
from typing import Any

from berth import __version__
from berth.common.db import Database
from berth.common.errors import BerthError, Conflict, InvalidParameter, NotFound, NotImplementedYet

from .containers import ContainerService
from .model import now_rfc3339
from .networks import NetworkService

SCHEMA = """
CREATE TABLE IF NOT EXISTS swarm (
    key TEXT PRIMARY KEY,
    record TEXT NOT NULL
);
"""

DEFAULT_PORT = 2377
DATA_PATH_PORT = 4789

NO_SWARM = "This node is not part of a swarm"
NO_MANAGER = ("This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect "
              "this node to swarm and try again.")
SWARM_EXISTS = ("This node is already part of a swarm. Use \"docker swarm leave\" to leave this swarm and join "
                "another one.")
LAST_MANAGER = ("You are attempting to leave the swarm on a node that is participating as a manager. Removing "
                "the last manager erases all current state of the swarm. Use `--force` to ignore this message. ")
SINGLE_NODE = ("berth's swarm mode is single-node: it runs no {what}; for several hosts use berth's cluster "
               "(berth cluster)")


class Unavailable(BerthError):
    """dockerd answers swarm-state errors with 503."""

    status = 503


def _base36_id(bits: int = 128, width: int = 25) -> str:
    """swarmkit's identifiers: a random number in base 36, zero-padded."""
    n = secrets.randbits(bits)
    digits = ""
    while n:
        n, r = divmod(n, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[r] + digits
    return digits.rjust(width, "0")


def _join_token() -> str:
    return f"SWMTKN-1-{_base36_id(256, 50)}-{_base36_id()}"


def default_spec() -> dict[str, Any]:
    return {"Name": "default", "Labels": {}, "Orchestration": {"TaskHistoryRetentionLimit": 5},
            "Raft": {"SnapshotInterval": 10000, "KeepOldSnapshots": 0, "LogEntriesForSlowFollowers": 500,
                     "ElectionTick": 10, "HeartbeatTick": 1},
            "Dispatcher": {"HeartbeatPeriod": 5000000000}, "CAConfig": {"NodeCertExpiry": 7776000000000000},
            "TaskDefaults": {}, "EncryptionConfig": {"AutoLockManagers": False}}


def _iface_ipv4(name: str) -> str | None:
    """The IPv4 address of interface `name` (SIOCGIFADDR), None if it has none or does not exist."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            raw = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))
        except OSError:
            return None
    return socket.inet_ntoa(raw[20:24])


def _default_route_ipv4() -> str | None:
    """The source address of the default route (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
        except OSError:
            return None
        return str(s.getsockname()[0])


def split_addr(text: str, default_port: int) -> tuple[str, int]:
    """`ip`, `ip:port`, `[v6]:port`, `iface`, `iface:port` -> (host or interface, port)."""
    text = text.strip()
    host, port = text, default_port
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":"):
            port = _port(rest[1:], text)
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        port = _port(p, text)
    return host, port


def _port(p: str, text: str) -> int:
    if not p.isdigit() or not 0 < int(p) < 65536:
        raise InvalidParameter(f"invalid address {text!r}: bad port")
    return int(p)


def _resolve_host(host: str, what: str) -> str:
    """An IP as is; an interface name to its IPv4 address."""
    try:
        return str(ip_address(host))
    except ValueError:
        pass
    addr = _iface_ipv4(host)
    if addr is None:
        raise InvalidParameter(f"{what} {host!r} is neither an IP address nor an interface with an IPv4 address")
    return addr


def _merge(defaults: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """The request's spec over dockerd's defaults; zero values keep the default, as swarmkit's."""
    out = dict(defaults)
    for k, v in given.items():
        if isinstance(out.get(k), dict) and isinstance(v, dict):
            out[k] = _merge(out[k], v)
        elif v not in (None, 0, "") or k not in out:
            out[k] = v
    return out


class SwarmService:
    def __init__(self, db: Database, networks: NetworkService, containers: ContainerService) -> None:
        self.db = db
        self.networks = networks
        self.containers = containers
        self._lock = asyncio.Lock()
        db.ensure_schema(SCHEMA)
        rows = db.query("SELECT record FROM swarm WHERE key='swarm'")
        self.state: dict[str, Any] | None = json.loads(rows[0]["record"]) if rows else None

    @property
    def active(self) -> bool:
        return self.state is not None

    def _save(self) -> None:
        with self.db.tx() as tx:
            if self.state is None:
                tx.execute("DELETE FROM swarm WHERE key='swarm'")
            else:
                tx.execute("INSERT OR REPLACE INTO swarm(key, record) VALUES ('swarm', ?)", (json.dumps(self.state),))

    def _manager(self) -> dict[str, Any]:
        if self.state is None:
            raise Unavailable(NO_MANAGER)
        return self.state

    # --- swarm init / leave / join ------------------------------------------------------------
    async def init(self, body: dict[str, Any]) -> str:
        async with self._lock:
            if self.state is not None:
                if body.get("ForceNewCluster"):  # already the sole manager: nothing to recover
                    return str(self.state["NodeID"])
                raise Unavailable(SWARM_EXISTS)
            if body.get("DefaultAddrPool"):  # SubnetSize alone is ignored, as by dockerd
                raise NotImplementedYet("berth's swarm networks take their subnets from the daemon's "
                                        "--default-pool: DefaultAddrPool is not supported")
            spec = body.get("Spec")
            if spec is not None and not isinstance(spec, dict):
                raise InvalidParameter("Spec must be an object")
            listen_host, listen_port = split_addr(str(body.get("ListenAddr") or f"0.0.0.0:{DEFAULT_PORT}"),
                                                  DEFAULT_PORT)
            listen_ip = _resolve_host(listen_host, "listen address")
            advertise = str(body.get("AdvertiseAddr") or "")
            if advertise:
                host, port = split_addr(advertise, listen_port)
                node_ip = _resolve_host(host, "advertise address")
            elif not ip_address(listen_ip).is_unspecified:
                node_ip, port = listen_ip, listen_port
            else:
                found = _default_route_ipv4()
                if found is None:
                    raise InvalidParameter("could not choose an IP address to advertise since this system has "
                                           "no default route - specify one with --advertise-addr")
                node_ip, port = found, listen_port
            now = now_rfc3339()
            merged = _merge(default_spec(), spec or {})
            encryption = merged.get("EncryptionConfig")
            if isinstance(encryption, dict) and encryption.get("AutoLockManagers"):
                raise NotImplementedYet("berth's swarm keeps no encrypted raft log: autolock is not supported")
            data_port = body.get("DataPathPort") or DATA_PATH_PORT  # recorded: one node sends no VXLAN
            if not isinstance(data_port, int) or not 1024 <= data_port <= 49151:
                raise InvalidParameter(f"data path port {data_port!r} must be between 1024 and 49151")
            self.state = {"ID": _base36_id(), "NodeID": _base36_id(), "CreatedAt": now, "UpdatedAt": now,
                          "Spec": merged, "NodeAddr": node_ip, "ManagerAddr": f"{node_ip}:{port}",
                          "ListenAddr": f"{listen_ip}:{listen_port}", "DataPathPort": data_port,
                          "JoinTokens": {"Worker": _join_token(), "Manager": _join_token()}}
            self._save()
            try:  # as dockerd: the routing mesh's network comes with the swarm
                await self.networks.create({"Name": "ingress", "Driver": "overlay", "Ingress": True,
                                            "Scope": "swarm"})
            except Conflict:  # a local network already has the name: the swarm goes on without one
                pass
            except BaseException:  # e.g. the address pool is exhausted: no swarm, as a failed init
                self.state = None
                self._save()
                raise
            return str(self.state["NodeID"])

    async def leave(self, force: bool) -> None:
        async with self._lock:
            if self.state is None:
                raise Unavailable(NO_SWARM)
            if not force:
                raise Unavailable(LAST_MANAGER)
            # As dockerd's leave: containers are disconnected from the swarm's networks, which go.
            for n in [n for n in self.networks.all() if n.swarm_local]:
                for c in self.networks.users(n, self.containers.all()):
                    async with c.busy:
                        await self.networks.disconnect(n, c)
                        self.containers._save(c)
                try:
                    await self.networks.remove(n.id, self.containers.all())
                except NotFound:
                    pass
            self.state = None
            self._save()

    async def join(self, body: dict[str, Any]) -> None:
        if self.state is not None:
            raise Unavailable(SWARM_EXISTS)
        raise NotImplementedYet("berth does not join other swarms (its swarm mode is single-node); for several "
                                "hosts use berth's cluster (berth cluster)")

    def update(self) -> None:
        self._manager()
        raise NotImplementedYet("berth's single-node swarm has a fixed spec: swarm update is not supported")

    def unlock_key(self) -> dict[str, Any]:
        self._manager()
        return {"UnlockKey": ""}  # autolock is never on

    def unlock(self) -> None:
        self._manager()
        raise NotImplementedYet("berth's swarm is never locked (no autolock): swarm unlock is not supported")

    def unsupported(self, what: str) -> None:
        """services, tasks, secrets, configs: dockerd's 503 outside a swarm, 501 inside berth's."""
        self._manager()
        raise NotImplementedYet(SINGLE_NODE.format(what=what))

    # --- views --------------------------------------------------------------------------------
    def _cluster(self, st: dict[str, Any]) -> dict[str, Any]:
        pool = self.networks.opts.pools[0]
        return {"ID": st["ID"], "Version": {"Index": 10}, "CreatedAt": st["CreatedAt"], "UpdatedAt": st["UpdatedAt"],
                "Spec": st["Spec"], "TLSInfo": {"TrustRoot": "", "CertIssuerSubject": "", "CertIssuerPublicKey": ""},
                "RootRotationInProgress": False, "DataPathPort": st.get("DataPathPort", DATA_PATH_PORT),
                "DefaultAddrPool": [str(pool[0])], "SubnetSize": pool[1]}

    def inspect(self) -> dict[str, Any]:
        st = self._manager()
        return self._cluster(st) | {"JoinTokens": dict(st["JoinTokens"])}

    def info_block(self) -> dict[str, Any]:
        st = self.state
        if st is None:
            return {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                    "Error": "", "RemoteManagers": None}
        return {"NodeID": st["NodeID"], "NodeAddr": st["NodeAddr"], "LocalNodeState": "active",
                "ControlAvailable": True, "Error": "",
                "RemoteManagers": [{"NodeID": st["NodeID"], "Addr": st["ManagerAddr"]}],
                "Nodes": 1, "Managers": 1, "Cluster": self._cluster(st)}

    def _node(self, st: dict[str, Any]) -> dict[str, Any]:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return {"ID": st["NodeID"], "Version": {"Index": 9}, "CreatedAt": st["CreatedAt"],
                "UpdatedAt": st["UpdatedAt"], "Spec": {"Labels": {}, "Role": "manager", "Availability": "active"},
                "Description": {"Hostname": socket.gethostname(),
                                "Platform": {"Architecture": os.uname().machine, "OS": "linux"},
                                "Resources": {"NanoCPUs": (os.cpu_count() or 1) * 10**9, "MemoryBytes": mem},
                                "Engine": {"EngineVersion": __version__,
                                           "Plugins": [{"Type": "Network", "Name": n} for n in
                                                       ("bridge", "host", "null", "overlay")]
                                           + [{"Type": "Volume", "Name": "local"}]},
                                "TLSInfo": {"TrustRoot": "", "CertIssuerSubject": "", "CertIssuerPublicKey": ""}},
                "Status": {"State": "ready", "Addr": st["NodeAddr"]},
                "ManagerStatus": {"Leader": True, "Reachability": "reachable", "Addr": st["ManagerAddr"]}}

    def nodes(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        node = self._node(self._manager())
        checks = {"id": lambda v: node["ID"].startswith(v), "name": lambda v: v == node["Description"]["Hostname"],
                  "role": lambda v: v == "manager", "membership": lambda v: v == "accepted"}
        for key, values in filters.items():
            test = checks.get(key)
            if test is not None and values and not any(test(v) for v in values):
                return []
        return [node]

    def node(self, ref: str) -> dict[str, Any]:
        st = self._manager()
        if ref in ("self", socket.gethostname()) or (ref and st["NodeID"].startswith(ref)):
            return self._node(st)
        raise NotFound(f"node {ref} not found")
