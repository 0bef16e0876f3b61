"""The bridge driver with real namespaces, links, iptables rules and traffic.

Each test gets its own iptables chain prefix, bridge names (`brt-<random>`), a subnet pool of its
own (10.211.0.0/16, skipping whatever is routed already) and a netns directory; everything is torn
down in `finally` blocks and the host's `ip -o link`, `iptables-save` and mounts are compared with
what they were before. dockerd's FORWARD policy DROP on this machine is part of the test: the
rules must make forwarding work anyway.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from berth.network import netns
from berth.network.ipam import Ipam, host_routes
from berth.network.iptables import Firewall
from berth.network.model import Endpoint, NetworkConfig, PortBinding
from berth.network.ports import PortAllocated

from .test_spec_runc import RUNC, bundle, run, state_root  # noqa: F401 - fixtures for the runc test

if TYPE_CHECKING:
    from berth.network.bridge import BridgeDriver

pytestmark = pytest.mark.root

BUSYBOX = shutil.which("busybox") or "/usr/bin/busybox"
TEST_POOL = IPv4Network("10.211.0.0/16")


@pytest.fixture(scope="module", autouse=True)
def _need_root() -> None:
    if os.geteuid() != 0 or not shutil.which("iptables-restore"):
        pytest.skip("needs root and iptables")


def _links() -> list[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return sorted(line.split(":")[1].strip().split("@")[0] for line in out.splitlines())


def _rules(*marks: str) -> list[str]:
    """iptables-save without counters and comments, sorted; only lines with one of `marks` if given
    (other engines and test runs may change the host's rules meanwhile)."""
    out = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    lines = (re.sub(r"\[\d+:\d+\]", "", line) for line in out.splitlines() if not line.startswith("#"))
    return sorted(line for line in lines if not marks or any(m in line for m in marks))


def _chain_rules(prefix: str) -> list[str]:
    return [line for line in _rules() if line.startswith(f"-A {prefix}-")]


@dataclass
class Env:
    """One test's networking world: driver, IPAM, netns directory, and what to undo."""

    prefix: str
    run_dir: str
    ipam: Ipam
    drv: BridgeDriver
    nets: list[NetworkConfig] = field(default_factory=list)
    eps: list[Endpoint] = field(default_factory=list)
    ns: list[str] = field(default_factory=list)
    extra_links: list[str] = field(default_factory=list)

    def network(self, *, internal: bool = False, icc: bool = True) -> NetworkConfig:
        nid = uuid.uuid4().hex * 2
        addrs = self.ipam.add_network(nid, host_routes=host_routes())
        net = NetworkConfig(id=nid, bridge=f"brt-{nid[:8]}", subnet=addrs.subnet, gateway=addrs.gateway,
                            internal=internal, icc=icc)
        self.nets.append(net)
        self.drv.create_network(net)
        return net

    def container(self, *nets: NetworkConfig,
                  ports: tuple[PortBinding, ...] = ()) -> tuple[str, list[Endpoint]]:
        cid = uuid.uuid4().hex * 2
        path = netns.create(self.run_dir, cid[:12])
        self.ns.append(path)
        eps = []
        for i, net in enumerate(nets):
            ip = self.ipam.allocate(net.id)
            first = i == 0
            ep = self.drv.connect(cid, net.id, path, f"eth{i}", ip, ports if first else (),
                                  default_route=first)
            self.eps.append(ep)
            eps.append(ep)
        return path, eps

    def teardown(self) -> None:
        for ep in self.eps:
            # As a stopping container: the netns deletion below frees the veth.
            self.drv.disconnect(ep, delete_link=False)
        for path in self.ns:
            netns.delete(path)
        for net in self.nets:
            self.drv.delete_network(net.id)
        for name in self.extra_links:
            subprocess.run(["ip", "link", "del", name], capture_output=True)


@pytest.fixture
def env() -> Iterator[Env]:
    from berth.network.bridge import BridgeDriver  # pyroute2: only where the driver is used

    tag = uuid.uuid4().hex[:6]
    prefix = f"BT{tag}".upper()
    # What this test could leave: its chains, its bridges and veths, its subnets.
    marks = (f"{prefix}-", "brt-", "vb", "bto-", "10.211.")
    links_before, rules_before = _links(), _rules(*marks)
    fw = Firewall(prefix)
    # A random /20 of the test pool each, so that test runs side by side rarely pick the same /24.
    pool = list(TEST_POOL.subnets(new_prefix=20))[int(tag, 16) % 16]
    e = Env(prefix, f"/tmp/btn-{tag}", Ipam([(pool, 24)], avoid=()), BridgeDriver(fw))
    try:
        yield e
        e.teardown()
        # Everything removed leaves only berth's base chains, empty.
        assert _chain_rules(prefix) == []
        assert any(f":{prefix}-FORWARD" in line for line in _rules())
    finally:
        try:
            e.teardown()
        finally:
            e.drv.close()
            fw.uninstall()
            netns.release_dir(e.run_dir)
    # Only this test's own links: berthd's of other tests (and other engines) come and go meanwhile.
    own = {n.bridge for n in e.nets} | {ep.host_ifname for ep in e.eps} | set(e.extra_links)
    own -= set(links_before)
    for _ in range(100):  # the kernel frees a deleted netns's links in the background
        if not own & set(_links()):
            break
        threading.Event().wait(0.02)
    assert not own & set(_links())
    assert _rules(*marks) == rules_before
    assert not os.path.exists(e.run_dir)
    with open("/proc/self/mountinfo") as f:
        assert e.run_dir not in f.read()


class Server:
    """A TCP listener inside a netns (the socket is made there, served from this process):
    each connection is answered with the peer's address, so tests see what NAT did."""

    def __init__(self, ns: str, port: int = 8000) -> None:
        def make() -> socket.socket:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", port))
            s.listen(16)
            return s

        self.sock = netns.run_in(ns, make) if ns else make()
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.sendall(peer[0].encode())

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)


def ask(ns: str | None, ip: str, port: int, timeout: float = 3.0) -> str:
    """Connect from inside `ns` (or the host) and return what the server said: the peer it saw."""
    def go() -> str:  # 3 s: a SYN lost while a fresh link settles is resent after 1 s
        with socket.create_connection((ip, port), timeout=timeout) as s:
            return s.recv(100).decode()

    return netns.run_in(ns, go) if ns else go()


def unreachable(ns: str, ip: str, port: int) -> bool:
    try:
        ask(ns, ip, port, timeout=0.5)
    except (TimeoutError, OSError) as e:
        return isinstance(e, TimeoutError) or e.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH)
    return False


def nsrun(ns: str, *argv: str) -> str:
    argv = ("nsenter", f"--net={ns}", *argv)
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def test_two_containers_reach_each_other(env: Env) -> None:
    net = env.network()
    ns1, (ep1,) = env.container(net)
    ns2, (ep2,) = env.container(net)
    assert ep1.mac == "02:42:" + ":".join(f"{b:02x}" for b in ep1.ip.packed)
    assert f"default via {net.gateway} dev eth0" in nsrun(ns1, "ip", "route")
    assert ep1.mac in nsrun(ns1, "ip", "link", "show", "eth0")
    srv = Server(ns1)
    try:
        assert ask(ns2, str(ep1.ip), 8000) == str(ep2.ip)  # no NAT on the bridge
    finally:
        srv.close()
    # The same with busybox nc on both ends, as a container would do it.
    listener = subprocess.Popen(["nsenter", f"--net={ns1}", BUSYBOX, "nc", "-l", "-p", "8001"],
                                stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(50):
            if ":1F41 " in nsrun(ns1, "cat", "/proc/net/tcp"):
                break
            threading.Event().wait(0.02)
        subprocess.run(["nsenter", f"--net={ns2}", BUSYBOX, "nc", "-w", "2", str(ep1.ip), "8001"],
                       input="hello\n", text=True, check=True, timeout=10)
        out, _ = listener.communicate(timeout=10)
        assert out == "hello\n"
    finally:
        listener.kill()
        listener.wait()


def test_icc_false_blocks_traffic_on_the_bridge(env: Env) -> None:
    net = env.network(icc=False)
    ns1, (ep1,) = env.container(net)
    ns2, _ = env.container(net)
    srv = Server(ns1)
    try:
        assert unreachable(ns2, str(ep1.ip), 8000)
        assert ask(None, str(ep1.ip), 8000) == str(net.gateway)  # the host still reaches it
    finally:
        srv.close()


def _outside(env: Env) -> tuple[str, str, str]:
    """A netns standing for the world beyond the host, routed through a veth pair (not a berth
    bridge): returns (its netns, its address, the host's address on that link)."""
    tag = uuid.uuid4().hex[:6]
    sub = env.ipam.add_network("outside" + tag, host_routes=host_routes()).subnet
    host_ip, far_ip = str(sub.network_address + 1), str(sub.network_address + 2)
    path = netns.create(env.run_dir, "out" + tag)
    env.ns.append(path)
    env.extra_links.append(f"bto-{tag}")
    subprocess.run(["ip", "link", "add", f"bto-{tag}", "type", "veth", "peer", "name", "eth0", "netns", path],
                   check=True)
    subprocess.run(["ip", "addr", "add", f"{host_ip}/24", "dev", f"bto-{tag}"], check=True)
    subprocess.run(["ip", "link", "set", f"bto-{tag}", "up"], check=True)
    nsrun(path, "ip", "addr", "add", f"{far_ip}/24", "dev", "eth0")
    nsrun(path, "ip", "link", "set", "eth0", "up")
    return path, far_ip, host_ip


def test_outbound_is_masqueraded_and_internal_networks_have_no_way_out(env: Env) -> None:
    out_ns, far_ip, host_ip = _outside(env)
    net = env.network()
    internal = env.network(internal=True)
    ns1, _ = env.container(net)
    ns2, (ep2,) = env.container(internal)
    srv = Server(out_ns, 9000)
    try:
        assert ask(ns1, far_ip, 9000) == host_ip  # forwarded through FORWARD DROP, masqueraded
        assert "default" not in nsrun(ns2, "ip", "route")
        assert unreachable(ns2, far_ip, 9000)  # no route at all
        nsrun(ns2, "ip", "route", "add", "default", "via", str(internal.gateway))
        assert unreachable(ns2, far_ip, 9000)  # and dropped when it tries anyway
    finally:
        srv.close()
    ns3, (ep3,) = env.container(internal)
    srv = Server(ns2)
    try:
        assert ask(ns3, str(ep2.ip), 8000) == str(ep3.ip)  # inside an internal network: fine
    finally:
        srv.close()


def test_networks_are_isolated_from_each_other(env: Env) -> None:
    a, b = env.network(), env.network()
    ns1, (ep1,) = env.container(a)
    ns2, _ = env.container(b)
    ns3, (ep3, ep3b) = env.container(a, b)  # on both: reaches either
    srv = Server(ns1)
    try:
        assert unreachable(ns2, str(ep1.ip), 8000)
        assert ask(ns3, str(ep1.ip), 8000) == str(ep3.ip)
        assert "eth1" in nsrun(ns3, "ip", "-o", "addr")
    finally:
        srv.close()
    # `network disconnect` of a running container: its link goes at once, the other one stays.
    env.drv.disconnect(ep3b)
    env.eps.remove(ep3b)
    assert ep3b.host_ifname not in _links()
    assert "eth1" not in nsrun(ns3, "ip", "-o", "link") and "eth0" in nsrun(ns3, "ip", "-o", "link")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_published_ports(env: Env) -> None:
    out_ns, _, host_ip = _outside(env)
    net = env.network()
    p_local, p_any = _free_port(), _free_port()
    ports = (PortBinding(80, "tcp", "127.0.0.1", p_local), PortBinding(80, "tcp", "0.0.0.0", p_any))
    ns1, (ep1,) = env.container(net, ports=ports)
    ns2, _ = env.container(net)
    srv = Server(ns1, 80)
    try:
        assert ask(None, "127.0.0.1", p_local) == str(net.gateway)  # route_localnet + masquerade
        assert ask(None, "127.0.0.1", p_any) == str(net.gateway)
        assert ask(out_ns, host_ip, p_any) != ""  # from "outside": PREROUTING DNAT + FORWARD ACCEPT
        assert ask(ns1, str(net.gateway), p_any) == str(net.gateway)  # hairpin to itself
        assert ask(ns2, host_ip, p_any) != ""  # another container through the host's address
        with pytest.raises(ConnectionRefusedError):  # bound to 127.0.0.1 only: no DNAT, nothing listens
            ask(out_ns, host_ip, p_local)
    finally:
        srv.close()


def test_port_conflicts_are_refused_with_dockers_message(env: Env) -> None:
    net = env.network()
    port = _free_port()
    holder = socket.socket()
    holder.bind(("127.0.0.1", port))
    holder.listen(1)
    try:
        links_before = _links()
        msg = rf"^Bind for 127.0.0.1:{port} failed: port is already allocated$"
        with pytest.raises(PortAllocated, match=msg):
            env.container(net, ports=(PortBinding(80, "tcp", "127.0.0.1", port),))
        assert _links() == links_before  # nothing left of the refused connect
    finally:
        holder.close()
    env.container(net, ports=(PortBinding(80, "tcp", "0.0.0.0", port),))
    with pytest.raises(PortAllocated, match=rf"Bind for 0.0.0.0:{port} failed"):
        env.container(net, ports=(PortBinding(81, "tcp", "0.0.0.0", port),))
    _, (ep,) = env.container(net, ports=(PortBinding(80, "udp", "0.0.0.0", port), PortBinding(80)))
    assert ep.ports[0].host_port == port and ep.ports[1].host_port > 0  # udp is another space; 0 = any


def test_restore_after_a_crash_keeps_ports_and_adds_no_rule(env: Env) -> None:
    from berth.network.bridge import BridgeDriver

    net = env.network()
    port = _free_port()
    ns1, (ep1,) = env.container(net, ports=(PortBinding(80, "tcp", "127.0.0.1", port),))
    srv = Server(ns1, 80)
    try:
        rules = _chain_rules(env.prefix)
        env.drv.close()  # what a kill -9 leaves: rules and links, no process, no port holds
        env.drv = BridgeDriver(Firewall(env.prefix))
        assert ask(None, "127.0.0.1", port) == str(net.gateway)  # forwarding never stopped
        for _ in range(2):
            env.drv.restore(env.nets, env.eps)
            assert _chain_rules(env.prefix) == rules
            assert ask(None, "127.0.0.1", port) == str(net.gateway)
        with pytest.raises(PortAllocated):  # the port is held again
            env.container(net, ports=(PortBinding(80, "tcp", "127.0.0.1", port),))
        # A rule removed behind berth's back: disconnect falls back to rewriting the chains.
        dnat = next(r for r in rules if r.startswith(f"-A {env.prefix}-DNAT"))
        subprocess.run(["iptables", "-t", "nat", "-D", *dnat.split()[1:]], check=True)
        env.drv.disconnect(ep1, delete_link=False)
        env.eps.remove(ep1)
        assert not [r for r in _chain_rules(env.prefix) if f"{ep1.ip}/32" in r]
    finally:
        srv.close()


def test_runc_container_joins_the_netns_path(env: Env, bundle: Path, state_root: Path) -> None:  # noqa: F811
    if not os.access(RUNC, os.X_OK):
        pytest.skip("needs runc")
    net = env.network()
    ns1, (ep1,) = env.container(net)
    os.symlink("busybox", bundle / "rootfs/bin/ip")
    # SpecOptions.network_mode takes the path: runc setns()es into it instead of making a netns.
    rc, out = run(bundle, state_root, "ip -o -4 addr show eth0; ip route", network_mode=ns1)
    assert rc == 0, out
    assert f"{ep1.ip}/{net.subnet.prefixlen}" in out
    assert f"default via {net.gateway}" in out
    assert IPv4Address(ep1.ip) in net.subnet
