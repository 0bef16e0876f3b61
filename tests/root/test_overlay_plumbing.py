"""The overlay driver on two test hosts (network namespaces joined by a veth underlay): containers
on either host reach each other over VXLAN once their peers are programmed, and no longer once a
peer is withdrawn. Everything lives in namespaces of the test's own, deleted at the end."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network

import pytest

from berth.network import links, netns
from berth.network.overlay import OverlayConfig, OverlayDriver, Peer

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def _ping(ns_path: str, ip: str) -> bool:
    return subprocess.run(["nsenter", f"--net={ns_path}", "busybox", "ping", "-c", "1", "-W", "2", ip],
                          capture_output=True).returncode == 0


@pytest.fixture
def hosts() -> Iterator[tuple[str, dict[str, str]]]:
    run_dir = tempfile.mkdtemp(prefix="bt-ovl-", dir="/run" if os.path.isdir("/run") else None)
    tag = uuid.uuid4().hex[:6]
    paths = {n: netns.create(run_dir, f"{n}-{tag}", spare=False) for n in ("ha", "hb", "ca", "cb")}
    try:
        with links.host_ipr() as ipr:
            ipr.link("add", ifname=f"ua{tag}", kind="veth", peer={"ifname": f"ub{tag}"})
            for end, host, addr in ((f"ua{tag}", "ha", "10.251.7.1"), (f"ub{tag}", "hb", "10.251.7.2")):
                fd = os.open(paths[host], os.O_RDONLY)
                try:
                    ipr.link("set", index=ipr.link_lookup(ifname=end)[0], net_ns_fd=fd)
                finally:
                    os.close(fd)
                with links._ns_ipr(paths[host]) as nsr:
                    idx = nsr.link_lookup(ifname=end)[0]
                    nsr.addr("add", index=idx, address=addr, prefixlen=24)
                    nsr.link("set", index=idx, state="up")
        yield tag, paths
    finally:
        for p in paths.values():
            netns.delete(p)
        netns.release_dir(run_dir)
        shutil.rmtree(run_dir, ignore_errors=True)


def test_two_hosts_reach_each_other_over_vxlan(hosts: tuple[str, dict[str, str]]) -> None:
    tag, paths = hosts
    net = OverlayConfig(id=uuid.uuid4().hex, vni=4242, subnet=IPv4Network("10.252.7.0/24"),
                        gateway=IPv4Address("10.252.7.1"))
    a = OverlayDriver(IPv4Address("10.251.7.1"), links._ns_ipr(paths["ha"]))
    b = OverlayDriver(IPv4Address("10.251.7.2"), links._ns_ipr(paths["hb"]))
    try:
        for drv in (a, b):
            drv.create_network(net)
            drv.create_network(net)  # idempotent
        ep_a = a.connect("ca" + tag, net.id, paths["ca"], "eth0", IPv4Address("10.252.7.2"))
        ep_b = b.connect("cb" + tag, net.id, paths["cb"], "eth0", IPv4Address("10.252.7.3"))
        peers = [Peer(ep_a.ip, ep_a.mac, a.vtep), Peer(ep_b.ip, ep_b.mac, b.vtep)]
        assert not _ping(paths["ca"], "10.252.7.3")  # nothing programmed: nothing crosses
        a.set_peers(net.id, peers)
        b.set_peers(net.id, peers)
        assert _ping(paths["ca"], "10.252.7.3") and _ping(paths["cb"], "10.252.7.2")
        link = subprocess.run(["nsenter", f"--net={paths['ca']}", "ip", "-o", "link", "show", "eth0"],
                              capture_output=True, text=True).stdout
        assert " mtu 1450 " in link
        a.set_peers(net.id, peers)  # unchanged: nothing to do, nothing doubled
        assert a._fdb(a._ipr.link_lookup(ifname=net.vxlan)[0]) == {
            ("00:00:00:00:00:00", "10.251.7.2"), (ep_b.mac, "10.251.7.2")}
        # the peer withdrawn (its container gone): its entries go
        a.set_peers(net.id, [Peer(ep_a.ip, ep_a.mac, a.vtep)])
        assert a._fdb(a._ipr.link_lookup(ifname=net.vxlan)[0]) == set()
        a.delete_network(net.id)
        with links._ns_ipr(paths["ha"]) as nsr:
            assert not nsr.link_lookup(ifname=net.vxlan) and not nsr.link_lookup(ifname=net.bridge)
    finally:
        a.close()
        b.close()
