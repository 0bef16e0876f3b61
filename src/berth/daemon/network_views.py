"""The Engine API's shapes of networks and endpoints, and the request parts parsed into them.

Functions only: a network's inspect view and an endpoint's, `NetworkSettings.Ports`, DNS names,
and the parsing of EndpointSettings, IPAM configs and port specs. No I/O.
"""

from __future__ import annotations

import hashlib
import re
from ipaddress import IPv4Address, ip_address
from typing import TYPE_CHECKING, Any

from berth.common.errors import InvalidParameter
from berth.network.ipam import Ipam
from berth.network.model import Endpoint, PortBinding, mac_for_ip

from .model import Container
from .network_state import Network

if TYPE_CHECKING:
    from .overlay import OverlayService

def _ipam_entry(pool: Any, given: list[dict[str, Any]]) -> dict[str, str]:
    """A pool as inspect's IPAM.Config shows it; the gateway only if the user gave one or gave no
    config for this family at all (an allocated pool's)."""
    entry = {"Subnet": str(pool.subnet)}
    if not given or given[0].get("Gateway"):
        entry["Gateway"] = str(pool.gateway)
    if pool.ip_range != pool.subnet:
        entry["IPRange"] = str(pool.ip_range)
    return entry


def inspect_view(ipam: Ipam, overlay: OverlayService | None, n: Network, containers: list[Container]) -> dict[str, Any]:
    """A network as `network inspect` shows it, with the endpoints of `containers` on it."""
    ipam_cfg: list[dict[str, str]] = []
    if n.driver == "overlay":
        ipam_cfg = [dict(c) for c in n.ipam_config]
    # as dockerd: a gateway the user's own IPAM config left out is not shown (an allocated pool's is)
    # (overlay networks show the gateway their store recorded, as dockerd's global-scope ones do)
    given = n.ipam_config if n.driver != "overlay" else []
    user4 = [c for c in given if ":" not in str(c.get("Subnet") or c.get("Gateway") or "")]
    user6 = [c for c in given if ":" in str(c.get("Subnet") or c.get("Gateway") or "")]
    if n.id in ipam.networks:
        entry = _ipam_entry(ipam.networks[n.id], user4)
        if n.ipam_config and n.ipam_config[0].get("AuxiliaryAddresses"):
            entry["AuxiliaryAddresses"] = n.ipam_config[0]["AuxiliaryAddresses"]
        ipam_cfg = [entry]
    if n.id in ipam.networks6:
        ipam_cfg.append(_ipam_entry(ipam.networks6[n.id], user6))
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
    if n.driver == "overlay" and overlay is not None and not n.swarm_local:  # the engines on it, as swarm's
        extra: dict[str, Any] = {"Peers": overlay.peers_view(n.id)}
    else:
        extra = {}
    return {"Name": n.name, "Id": n.id, "Created": n.created,
            "Scope": n.scope_view, "Driver": n.driver,
            "EnableIPv6": n.ipv6, "IPAM": {"Driver": "default", "Options": None if n.ipam_options is None else dict(n.ipam_options),
                                          "Config": ipam_cfg},
            "Internal": n.internal, "Attachable": n.attachable, "Ingress": n.ingress,
            "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": members,
            "Options": dict(n.options), "Labels": dict(n.labels), **extra}


def endpoint_addresses(ipam: Ipam, n: Network, ep: Endpoint) -> dict[str, Any]:
    """The addresses part of a container's view of `n` once its endpoint `ep` is wired."""
    if n.driver == "overlay":  # no gateway: an overlay is not a way out (see daemon/overlay.py)
        return {"NetworkID": n.id, "EndpointID": endpoint_id(ep), "Gateway": "", "IPAddress": str(ep.ip),
                "IPPrefixLen": ep.prefixlen, "MacAddress": ep.mac, "IPv6Gateway": "", "GlobalIPv6Address": "",
                "GlobalIPv6PrefixLen": 0}
    na = ipam.networks[n.id]
    na6 = ipam.networks6.get(n.id)
    return {"NetworkID": n.id, "EndpointID": endpoint_id(ep), "Gateway": str(na.gateway),
            "IPAddress": str(ep.ip), "IPPrefixLen": ep.prefixlen, "MacAddress": ep.mac,
            "IPv6Gateway": str(na6.gateway) if na6 and ep.ip6 else "",
            "GlobalIPv6Address": str(ep.ip6) if ep.ip6 else "", "GlobalIPv6PrefixLen": ep.prefixlen6}


def endpoint_view(network_id: str = "") -> dict[str, Any]:
    return {"IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "", "NetworkID": network_id,
            "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "",
            "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DriverOpts": None, "DNSNames": None}



def apply_endpoint_config(ep: dict[str, Any], cfg: dict[str, Any], n: Network | None) -> None:
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



def split_families(configs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
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



def dns_names(c: Container, view: dict[str, Any]) -> list[str]:
    """docker's DNSNames of an endpoint: name, aliases, short id, hostname (deduplicated)."""
    out: list[str] = []
    for x in [c.name, *(view.get("Aliases") or []), c.id[:12], c.config.get("Hostname") or ""]:
        if x and x not in out:
            out.append(str(x))
    return out



def ports_view(c: Container, published: tuple[PortBinding, ...]) -> dict[str, Any]:
    """NetworkSettings.Ports: every exposed port, with its host bindings or null."""
    out: dict[str, Any] = {str(k) if "/" in str(k) else f"{k}/tcp": None
                           for k in (c.config.get("ExposedPorts") or {})}
    for p in published:
        out.setdefault(f"{p.container_port}/{p.proto}", None)
        key = f"{p.container_port}/{p.proto}"
        out[key] = (out[key] or []) + [{"HostIp": p.host_ip, "HostPort": str(p.host_port)}]
    return out


def port_key(key: str) -> tuple[int, str]:
    port, _, proto = str(key).partition("/")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidParameter(f"invalid port specification: {key!r}")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp"):
        raise InvalidParameter(f"invalid protocol {proto!r} in port {key!r}")
    return int(port), proto



def host_port_range(text: str) -> tuple[int, int]:
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



def net_id(c: Container, key: str) -> str:
    return str((c.networks.get(key) or {}).get("NetworkID") or "")



def endpoint_id(ep: Endpoint) -> str:
    return hashlib.sha256(f"{ep.container_id}/{ep.network_id}/{ep.host_ifname}".encode()).hexdigest()



def mac_opt(view: dict[str, Any] | None, ip: IPv4Address) -> str | None:
    """The driver's `mac` when the endpoint asks for its own MAC address."""
    mac = str((view or {}).get("MacAddress") or "")
    return mac if mac and mac != mac_for_ip(ip) else None

