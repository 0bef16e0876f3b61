"""A cluster on this machine's network namespaces, for `berth cluster demo`, the tests and bench/.

The netns machines share an L2 switch (a bridge in a namespace of its own). One more port on it, from
this machine's namespace (the uplink), carries the address the etcd members listen on: the hosts'
engines reach the store through it for their overlay networks (`--cluster-store`), and the manager
and join agents, which run here, reach it the same way.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import subprocess
from dataclasses import dataclass

from berth.machine.model import OptionValue
from berth.machine.netns import NETNS_DIR, SWITCH_BRIDGE, NetnsDriver


def _ip(*argv: str, check: bool = True) -> None:
    res = subprocess.run(["ip", *argv], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    if check and res.returncode != 0:
        raise OSError(f"ip {' '.join(argv)}: {res.stderr.strip()}")


@dataclass(frozen=True)
class Uplink:
    switch: str  # the machines' switch namespace
    link: str  # our end, in this namespace
    port: str  # its peer on the switch
    address: str  # ours, CIDR

    @property
    def ip(self) -> str:
        return str(ipaddress.IPv4Interface(self.address).ip)


def uplink_for(driver: NetnsDriver, address: str) -> Uplink:
    h = hashlib.sha256(driver.state_root.encode()).hexdigest()[:8]
    return Uplink(driver.switch, f"bcu{h}", f"bcs{h}", address)


def open_uplink(driver: NetnsDriver, address: str) -> Uplink:
    """The switch (made now if no machine made it yet; the driver then uses it) with our port on it."""
    up = uplink_for(driver, address)
    try:
        if not os.path.exists(os.path.join(NETNS_DIR, up.switch)):
            _ip("netns", "add", up.switch)
            _ip("-n", up.switch, "link", "add", SWITCH_BRIDGE, "type", "bridge")
            _ip("-n", up.switch, "link", "set", SWITCH_BRIDGE, "up")
        _ip("link", "add", up.link, "type", "veth", "peer", "name", up.port, "netns", up.switch)
        _ip("-n", up.switch, "link", "set", up.port, "master", SWITCH_BRIDGE, "up")
        _ip("addr", "add", address, "dev", up.link)
        _ip("link", "set", up.link, "up")
    except OSError:
        close_uplink(up)
        raise
    return up


def close_uplink(up: Uplink) -> None:
    """After the machines are removed: our port, then the switch if nothing else is on it."""
    _ip("link", "del", up.link, check=False)
    if os.path.exists(os.path.join(NETNS_DIR, up.switch)):
        ports = subprocess.run(["ip", "-n", up.switch, "-o", "link", "show", "type", "veth"], capture_output=True,
                               text=True, timeout=30, stdin=subprocess.DEVNULL)
        if ports.returncode == 0 and not ports.stdout.strip():
            _ip("netns", "del", up.switch, check=False)


def cluster_store_options(endpoints: list[str], ttl: int = 3, advertise: str = "eth0") -> dict[str, OptionValue]:
    """berthd's options (a machine's `engine.options`) for overlay networks in this etcd."""
    hosts = ",".join(e.split("://", 1)[-1].rstrip("/") for e in endpoints)
    return {"cluster-store": f"etcd://{hosts}", "cluster-advertise": advertise,
            "cluster-store-opt": f"discovery.ttl={ttl}"}
