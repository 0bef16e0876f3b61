"""Overlay networks in berthd: two engines, each in a netns host of the machine driver, sharing a
1-member etcd, driven with the real docker CLI.

The hosts' L2 segment (the driver's switch namespace) gets one more port, from the test's own
namespace, whose address the etcd member listens on: the engines reach the store through it and
the test reads the store the same way. Each host's FORWARD policy is set to DROP (its own
namespace: nothing of the machine's), so the overlay traffic only passes by berth's accept rule
for overlay bridges (br_netfilter is on there, as berthd enables it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from berth.etcd import EtcdClient
from berth.etcd.local import LocalEtcd, Member, free_port
from berth.machine.driver import MachineRecord
from berth.machine.model import EngineSpec, MachineSpec
from berth.machine.netns import NETNS_DIR, SWITCH_BRIDGE, NetnsDriver

from ..conftest import Daemon, _UnixConnection, busybox_tar, docker_cli

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

DOCKER = docker_cli()
TTL = 3


def wait_for(check: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(list(argv), capture_output=True, text=True, timeout=60)
    if check:
        assert res.returncode == 0, (argv, res.stdout, res.stderr)
    return res


@dataclass
class Host:
    record: MachineRecord

    @property
    def sock(self) -> str:
        return str(self.record.details["socket"])

    @property
    def netns(self) -> str:
        return os.path.join(NETNS_DIR, self.record.details["netns"])

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert DOCKER is not None
        return run(DOCKER, "-H", f"unix://{self.sock}", *args, check=check)

    def inspect(self, kind: str, ref: str) -> dict:  # type: ignore[type-arg]
        return json.loads(self.docker(kind, "inspect", ref).stdout)[0]

    def ns(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run("nsenter", f"--net={self.netns}", *argv, check=check)


@dataclass
class Cluster:
    hosts: list[Host]
    etcd: EtcdClient
    net: int  # the third octet of this module's subnets
    driver: NetnsDriver

    @property
    def a(self) -> Host:
        return self.hosts[0]

    @property
    def b(self) -> Host:
        return self.hosts[1]


@contextmanager
def overlay_lab(hosts_wanted: int = 2) -> Iterator[Cluster]:
    """The etcd member and the engines (also used by bench/overlay_bench.py); all removed after."""
    root = tempfile.mkdtemp(prefix="bt-ov-", dir="/tmp")
    tag = os.urandom(2).hex()
    net = 10 + int(tag, 16) % 200
    driver = NetnsDriver(os.path.join(root, "machines"))
    switch = os.path.join(NETNS_DIR, driver.switch)
    uplink = f"ovh{tag}"
    store_ip = f"10.253.{net}.1"
    etcd = LocalEtcd(os.path.join(root, "etcd"))
    hosts: list[Host] = []
    try:
        # the switch made ahead of the machines (the driver then uses it), with our port on it
        run("ip", "netns", "add", driver.switch)
        run("ip", "-n", driver.switch, "link", "add", SWITCH_BRIDGE, "type", "bridge")
        run("ip", "-n", driver.switch, "link", "set", SWITCH_BRIDGE, "up")
        run("ip", "link", "add", uplink, "type", "veth", "peer", "name", f"ovs{tag}", "netns", driver.switch)
        run("ip", "-n", driver.switch, "link", "set", f"ovs{tag}", "master", SWITCH_BRIDGE, "up")
        run("ip", "addr", "add", f"{store_ip}/24", "dev", uplink)
        run("ip", "link", "set", uplink, "up")
        os.makedirs(etcd.root, exist_ok=True)
        port = free_port()
        member = Member("m0", f"http://{store_ip}:{port}", f"http://127.0.0.1:{free_port()}",
                        os.path.join(etcd.root, "m0"), os.path.join(etcd.root, "m0.log"))
        etcd.members.append(member)
        etcd.start_member(member, "new")
        etcd.wait_ready()
        tar = busybox_tar().read_bytes()
        for i in range(hosts_wanted):
            advertise = "eth0" if i == 0 else f"10.253.{net}.{11 + i}"  # an interface, and addresses
            opts = {"cluster-store": f"etcd://{store_ip}:{port}", "cluster-advertise": advertise,
                    "cluster-store-opt": f"discovery.ttl={TTL}"}
            spec = MachineSpec(f"ov{tag}-{'abcdefgh'[i]}", "netns", {"address": f"10.253.{net}.{11 + i}/24"},
                               EngineSpec(options=opts))
            host = Host(driver.create(spec))
            hosts.append(host)
            conn = _UnixConnection(host.sock, 60)
            conn.request("POST", "/images/load?quiet=1", body=tar, headers={"Content-Type": "application/x-tar"})
            assert conn.getresponse().status == 200
            conn.close()
            host.ns("iptables", "-P", "FORWARD", "DROP")
        yield Cluster(hosts, EtcdClient(etcd.endpoints), net, driver)
    finally:
        for h in hosts:
            driver.remove(h.record)
        etcd.stop()
        run("ip", "link", "del", uplink, check=False)
        if os.path.exists(switch):
            run("ip", "netns", "del", driver.switch, check=False)
        run("rm", "-rf", root, check=False)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    if DOCKER is None:
        pytest.skip("docker CLI not installed")
    with overlay_lab() as c:
        yield c


def names(h: Host) -> set[str]:
    return set(h.docker("network", "ls", "--format", "{{.Name}}").stdout.split())


def test_overlay_network_is_created_once_for_the_cluster(cluster: Cluster, berthd: Daemon) -> None:
    a, b, net = cluster.a, cluster.b, cluster.net
    a.docker("network", "create", "-d", "overlay", "--subnet", f"10.254.{net}.0/24", "--attachable",
             "--label", "team=x", "ovx")
    wait_for(lambda: "ovx" in names(b), 10, "the network on the other engine")
    seen = b.inspect("network", "ovx")
    assert seen["Scope"] == "global" and seen["Driver"] == "overlay" and seen["Attachable"] is True
    assert seen["IPAM"]["Config"] == [{"Subnet": f"10.254.{net}.0/24", "Gateway": f"10.254.{net}.1"}]
    assert seen["Labels"] == {"team": "x"} and seen["Id"] == a.inspect("network", "ovx")["Id"]
    assert b.docker("network", "ls", "--filter", "scope=global", "--format", "{{.Name}}").stdout.split() == ["ovx"]
    # name, subnet and VNI are taken cluster-wide
    dup = b.docker("network", "create", "-d", "overlay", "ovx", check=False)
    assert dup.returncode != 0 and "already exists" in dup.stderr
    clash = b.docker("network", "create", "-d", "overlay", "--subnet", f"10.254.{net}.128/25", "ovy", check=False)
    assert clash.returncode != 0 and "overlaps" in clash.stderr
    b.docker("network", "create", "-d", "overlay", "ovz")
    z = b.inspect("network", "ovz")
    vni = "com.docker.network.driver.overlay.vxlanid_list"
    assert z["Options"][vni] != seen["Options"][vni]
    assert z["IPAM"]["Config"][0]["Subnet"].startswith("10.209.")
    wait_for(lambda: "ovz" in names(a), 10, "the second network on the first engine")
    a.docker("network", "rm", "ovz")
    wait_for(lambda: "ovz" not in names(b), 10, "the removal on the other engine")
    # an engine without a cluster store refuses overlay networks and does not list them
    assert DOCKER is not None
    plain = run(DOCKER, "-H", berthd.host, "network", "create", "-d", "overlay", "ovx", check=False)
    assert plain.returncode != 0 and "cluster store" in plain.stderr


def ip_on(h: Host, ref: str, network: str = "ovx") -> str:
    return str(h.inspect("container", ref)["NetworkSettings"]["Networks"][network]["IPAddress"])


def lookup(h: Host, ctr: str, name: str) -> set[str]:
    out = h.docker("exec", ctr, "nslookup", name, "127.0.0.11", check=False).stdout
    # busybox prints the server first ("Address: 127.0.0.11:53"), then one line per answer
    return {line.split()[-1] for line in out.splitlines()
            if line.startswith("Address") and "127.0.0.11" not in line}


def http_get(h: Host, ctr: str, name: str) -> str:
    res = h.docker("exec", ctr, "sh", "-c", f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {name} 80", check=False)
    return res.stdout.strip().splitlines()[-1] if res.returncode == 0 and res.stdout.strip() else ""


def web(h: Host, name: str, text: str) -> None:
    h.docker("run", "-d", "--name", name, "--network", "ovx", "--network-alias", "svc", "busybox", "sh", "-c",
             f"mkdir -p /www && echo {text} > /www/index.html && exec httpd -f -p 80 -h /www")


def test_containers_on_two_engines_talk_by_name_and_shared_alias(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    web(a, "web-a", "from-a")
    web(b, "web-b", "from-b")
    a.docker("run", "-d", "--name", "cli-a", "--network", "ovx", "busybox", "sleep", "1d")
    ip_a, ip_b = ip_on(a, "web-a"), ip_on(b, "web-b")
    assert ip_a != ip_b  # allocated cluster-wide
    # by name, both ways
    wait_for(lambda: a.docker("exec", "cli-a", "ping", "-c", "1", "-W", "1", "web-b", check=False).returncode == 0,
             10, "ping across engines")
    assert b.docker("exec", "web-b", "ping", "-c", "1", "-W", "2", "cli-a", check=False).returncode == 0
    assert wait_for(lambda: http_get(a, "cli-a", "web-b") == "from-b", 5, "HTTP by name")
    # the shared alias: both addresses answered, and both containers serve it
    assert wait_for(lambda: lookup(a, "cli-a", "svc") == {ip_a, ip_b}, 5, "both addresses of the alias")
    served: set[str] = set()
    wait_for(lambda: served.add(http_get(a, "cli-a", "svc")) or served >= {"from-a", "from-b"}, 20,
             "both containers answering the alias")
    # what an overlay endpoint looks like inside: MTU 1450, no default route
    link = a.docker("exec", "cli-a", "ip", "-o", "link", "show", "eth0").stdout
    assert " mtu 1450 " in link
    assert "default" not in a.docker("exec", "cli-a", "ip", "route").stdout
    # it crossed each host's FORWARD (policy DROP, br_netfilter on) by berth's overlay rule
    for h in (a, b):
        assert h.ns("cat", "/proc/sys/net/bridge/bridge-nf-call-iptables").stdout.strip() == "1"
        accepted = [line for line in h.ns("iptables-save", "-c").stdout.splitlines()
                    if "-i ov-+ -o ov-+" in line and "ACCEPT" in line]
        assert accepted and not accepted[0].startswith("[0:"), accepted
    rule = [f"{a.record.details['iptables_prefix']}-FORWARD", "-i", "ov-+", "-o", "ov-+", "-j", "ACCEPT"]
    a.ns("iptables", "-w", "-D", *rule)
    try:  # without it, the DROP policy stops the overlay
        assert a.docker("exec", "cli-a", "ping", "-c", "1", "-W", "1", ip_b, check=False).returncode != 0
    finally:
        a.ns("iptables", "-w", "-I", *rule[:1], "1", *rule[1:])
    assert a.docker("exec", "cli-a", "ping", "-c", "1", "-W", "2", ip_b, check=False).returncode == 0
    ovx = a.inspect("network", "ovx")
    assert sorted(p["IP"] for p in ovx["Peers"]) == [f"10.253.{cluster.net}.11", f"10.253.{cluster.net}.12"]


def vxlan_entries(h: Host, vx: str) -> str:
    """The VXLAN device's own forwarding entries (`dst` a VTEP), not what its bridge learnt."""
    return "".join(line for line in h.ns("bridge", "fdb", "show", "dev", vx).stdout.splitlines(True) if " dst " in line)


def test_stop_and_removal_withdraw_the_endpoint(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    ip_a, ip_b = ip_on(a, "web-a"), ip_on(b, "web-b")
    vx = "vx-" + a.inspect("network", "ovx")["Id"][:12]
    mac_b = b.inspect("container", "web-b")["NetworkSettings"]["Networks"]["ovx"]["MacAddress"]
    assert mac_b in vxlan_entries(a, vx)
    b.docker("stop", "-t", "1", "web-b")
    assert wait_for(lambda: lookup(a, "cli-a", "svc") == {ip_a}, 5, "the stopped container withdrawn")
    assert mac_b not in vxlan_entries(a, vx)
    b.docker("start", "web-b")
    assert ip_on(b, "web-b") == ip_b  # kept from its first start, as on bridge networks
    assert wait_for(lambda: lookup(a, "cli-a", "web-b") == {ip_b}, 5, "the restarted container back")
    netid = a.inspect("network", "ovx")["Id"]
    # a removed network is refused while an engine has endpoints on it
    rm = a.docker("network", "rm", "ovx", check=False)
    assert rm.returncode != 0 and "active endpoints" in rm.stderr
    b.docker("rm", "-f", "web-b")
    assert wait_for(lambda: not lookup(a, "cli-a", "web-b"), 5, "the removed container withdrawn")
    assert cluster.etcd.get(f"/berth/overlay/ipam/{netid}/{ip_b}") is None  # its address released


def test_frozen_engine_endpoints_expire_and_come_back(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    web(b, "web-b2", "from-b2")
    ip = ip_on(b, "web-b2")
    assert wait_for(lambda: lookup(a, "cli-a", "web-b2") == {ip}, 5, "the new container")
    pid = int(open(b.record.details["pidfile"]).read())
    os.kill(pid, signal.SIGSTOP)
    try:
        assert wait_for(lambda: not lookup(a, "cli-a", "web-b2"), TTL + 5, "the frozen engine's endpoint expired")
    finally:
        os.kill(pid, signal.SIGCONT)
    assert wait_for(lambda: lookup(a, "cli-a", "web-b2") == {ip}, TTL + 5, "the endpoint put back")


def test_network_connect_disconnect_and_daemon_restart(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    b.docker("run", "-d", "--name", "late", "busybox", "sleep", "1d")  # on the default bridge first
    b.docker("network", "connect", "--alias", "svc2", "ovx", "late")
    ip = ip_on(b, "late")
    assert wait_for(lambda: lookup(a, "cli-a", "svc2") == {ip}, 5, "the connected container by alias")
    assert a.docker("exec", "cli-a", "ping", "-c", "1", "-W", "2", "late", check=False).returncode == 0
    b.docker("network", "disconnect", "ovx", "late")
    assert wait_for(lambda: not lookup(a, "cli-a", "late"), 5, "the disconnected container withdrawn")
    # a restarted engine puts its running containers' endpoints back and programs its peers again
    # ... and drops the devices of a network removed while it was down
    a.docker("network", "create", "-d", "overlay", "ovgone")
    gone = "ov-" + a.inspect("network", "ovgone")["Id"][:12]
    wait_for(lambda: "ovgone" in names(b), 10, "the network on the other engine")
    b.docker("run", "--rm", "--network", "ovgone", "busybox", "true")
    assert gone in b.ns("ip", "-o", "link").stdout
    cluster.driver.stop(b.record)
    a.docker("network", "rm", "ovgone")
    cluster.driver.start(b.record)
    assert gone not in b.ns("ip", "-o", "link").stdout
    ip2 = ip_on(b, "web-b2")
    assert wait_for(lambda: lookup(a, "cli-a", "web-b2") == {ip2}, 5, "the endpoint after the restart")
    assert wait_for(lambda: b.docker("exec", "web-b2", "ping", "-c", "1", "-W", "1", "cli-a",
                                     check=False).returncode == 0, 5, "peers programmed after the restart")
    b.docker("rm", "-f", "late")


def test_network_rm_is_cluster_wide(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    netid = a.inspect("network", "ovx")["Id"]
    b.docker("rm", "-f", "web-b2")
    a.docker("rm", "-f", "web-a", "cli-a")
    a.docker("network", "rm", "ovx")
    wait_for(lambda: "ovx" not in names(b), 10, "the removal on the other engine")
    for h in (a, b):
        assert f"ov-{netid[:12]}" not in h.ns("ip", "-o", "link").stdout
    assert cluster.etcd.get_prefix("/berth/overlay/ipam/") == []
