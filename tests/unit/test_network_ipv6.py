"""Pure parts of IPv6 networks, port ranges and links: IPAM's second address space, ip6tables
rendering, AAAA answers, HostPort ranges, IPAM.Config families and the hosts rewrite."""

from __future__ import annotations

import json
import socket
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path

import dns.message
import dns.rdatatype
import pytest

from berth.common.errors import Conflict, InvalidParameter
from berth.daemon.network_links import rewrite_hosts
from berth.daemon.network_views import host_port_range, split_families
from berth.network.dns import answer_locally
from berth.network.ipam import DEFAULT_POOL6, Ipam, PoolExhausted
from berth.network.iptables import Chains, render6
from berth.network.model import Endpoint, NetworkConfig, PortBinding
from berth.network.ports import PortAllocated, PortHolds, parse_publish


def test_ipam6_given_subnet_range_gateway_and_fixed_addresses() -> None:
    ipam = Ipam()
    na = ipam.add_network6("n", "2001:389::/64", "2001:389::ffff", "2001:389::/96")
    assert na.gateway == IPv6Address("2001:389::ffff")
    assert [ipam.allocate6("n") for _ in range(2)] == [IPv6Address("2001:389::1"), IPv6Address("2001:389::2")]
    assert ipam.allocate6("n", "2001:389::f00d") == IPv6Address("2001:389::f00d")
    with pytest.raises(Conflict):
        ipam.allocate6("n", "2001:389::f00d")
    with pytest.raises(InvalidParameter):
        ipam.allocate6("n", "2001:390::1")
    with pytest.raises(Conflict):
        ipam.add_network6("m", "2001:389::/48")  # overlaps
    state = json.loads(json.dumps(ipam.to_dict()))
    again = Ipam()
    again.load(state)
    assert again.networks6["n"].allocated == ipam.networks6["n"].allocated
    ipam.release6("n", IPv6Address("2001:389::f00d"))
    assert ipam.allocate6("n", "2001:389::f00d")


def test_ipam6_default_pool_avoids_host_routes_and_refuses_fixed_addresses() -> None:
    ipam = Ipam()
    first = next(DEFAULT_POOL6.subnets(new_prefix=64))
    na = ipam.add_network6("a", host_routes=[first, IPv6Network("fe80::/64"), IPv6Network("::/0")])
    assert na.subnet != first and na.subnet.subnet_of(DEFAULT_POOL6) and na.subnet.prefixlen == 64
    assert ipam.add_network6("b").subnet == first  # host routes are the caller's, per call
    with pytest.raises(InvalidParameter):
        ipam.allocate6("a", str(na.subnet.network_address + 7))  # only on a user subnet
    assert ipam.allocate6("none") is None  # a network without IPv6
    with pytest.raises(InvalidParameter):
        ipam.allocate6("none", "fd00::5")
    small = Ipam()
    small.add_network6("s", "fd5e::/126")  # gateway ::1, then ::2 and ::3
    small.allocate6("s")
    small.allocate6("s")
    with pytest.raises(PoolExhausted):
        small.allocate6("s")


def test_render6_rules() -> None:
    nets = [NetworkConfig("a", "br-a", IPv4Network("10.9.0.0/24"), IPv4Address("10.9.0.1"),
                          subnet6=IPv6Network("fd5e:1::/64"), gateway6=IPv6Address("fd5e:1::1")),
            NetworkConfig("b", "br-b", IPv4Network("10.9.1.0/24"), IPv4Address("10.9.1.1"), internal=True,
                          icc=False, subnet6=IPv6Network("fd5e:2::/64"), gateway6=IPv6Address("fd5e:2::1")),
            NetworkConfig("c", "br-c", IPv4Network("10.9.2.0/24"), IPv4Address("10.9.2.1"))]  # IPv4 only
    out = render6(Chains("B"), nets)
    assert "br-c" not in out["filter"] + out["nat"]
    assert "-A B-POSTROUTING -s fd5e:1::/64 ! -o br-a -j MASQUERADE" in out["nat"]
    assert "fd5e:2::/64 ! -o" not in out["nat"]  # internal: no way out, no masquerade
    assert "-A B-ISOLATION-1 ! -s fd5e:2::/64 -o br-b -j DROP" in out["filter"]
    assert "-A B-FORWARD -i br-b -o br-b -j DROP" in out["filter"]
    assert "-A B-FORWARD -i br-a ! -o br-a -j ACCEPT" in out["filter"]
    empty = render6(Chains("B"), [nets[2]])
    assert ":B-FORWARD - [0:0]" in empty["filter"] and "-A " not in empty["filter"]
    assert NetworkConfig.from_dict(nets[0].to_dict()) == nets[0]


def test_endpoint_record_with_ipv6_round_trips() -> None:
    ep = Endpoint("c", "n", "/ns", "eth0", IPv4Address("10.9.0.2"), 24, "02:42:0a:09:00:02", "vbx",
                  (PortBinding(80, host_port=8000),), IPv6Address("fd5e:1::2"), 64)
    assert Endpoint.from_dict(json.loads(json.dumps(ep.to_dict()))) == ep
    old = {k: v for k, v in ep.to_dict().items() if k not in ("ip6", "prefixlen6")}
    assert Endpoint.from_dict(old).ip6 is None  # records from before IPv6


class Table:
    def resolve(self, container_id: str, name: str) -> list[str] | None:
        return ["10.1.0.2", "fd5e:1::2"] if name == "web" else ["10.1.0.3"] if name == "v4only" else None

    def reverse(self, container_id: str, ip: str) -> str | None:
        return "web.net" if ip == "fd5e:1::2" else None

    def upstreams(self, container_id: str) -> list[str]:
        return []


def _ask(name: str, rdtype: str) -> dns.message.Message:
    out = answer_locally(Table(), "me", dns.message.make_query(name, rdtype).to_wire())
    assert out is not None
    return dns.message.from_wire(out)


def test_dns_answers_aaaa_by_family() -> None:
    assert [rd.address for rd in _ask("web", "AAAA").answer[0]] == ["fd5e:1::2"]
    assert [rd.address for rd in _ask("web", "A").answer[0]] == ["10.1.0.2"]
    assert _ask("v4only", "AAAA").answer == []  # NODATA, not a forward
    assert {rr.rdtype for rr in _ask("web", "ANY").answer} == {dns.rdatatype.A, dns.rdatatype.AAAA}
    ptr = _ask("2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.e.5.d.f.ip6.arpa", "PTR")
    assert ptr.answer[0][0].target.to_text() == "web.net."


@pytest.mark.parametrize("text,want", [("", (0, 0)), ("8080", (8080, 0)), ("8000-8010", (8000, 8010)),
                                       ("8000-8000", (8000, 0))])
def test_host_port_range(text: str, want: tuple[int, int]) -> None:
    assert host_port_range(text) == want


@pytest.mark.parametrize("bad", ["x", "80-", "9000-8000", "70000", "1-70000"])
def test_host_port_range_rejects(bad: str) -> None:
    with pytest.raises(InvalidParameter):
        host_port_range(bad)


def test_port_range_takes_the_first_free_port() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        first = busy.getsockname()[1]
        holds = PortHolds()
        try:
            try:
                got = holds.take(PortBinding(80, "tcp", "127.0.0.1", first, first + 1))
            except PortAllocated:
                pytest.skip("the next port is taken by someone else")
            assert got.host_port == first + 1 and got.host_port_end == 0
            with pytest.raises(PortAllocated, match="all ports are allocated"):
                holds.take(PortBinding(80, "tcp", "127.0.0.1", first, first + 1))
        finally:
            holds.close()
    assert parse_publish("127.0.0.1:8000-8010:80") == [PortBinding(80, "tcp", "127.0.0.1", 8000, 8010)]


def test_split_families() -> None:
    v4, v6 = split_families([{"Subnet": "fd5e::/64"}, {"Subnet": "10.9.0.0/24"}])
    assert v4 == {"Subnet": "10.9.0.0/24"} and v6 == {"Subnet": "fd5e::/64"}
    assert split_families([]) == ({}, {})
    with pytest.raises(InvalidParameter):
        split_families([{"Subnet": "fd5e::/64"}, {"Subnet": "fd5f::/64"}])


def test_rewrite_hosts_by_first_name(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1\tlocalhost\n10.1.0.2\tdb abc123 mydb\n10.1.0.9\tother db\n")
    inode = hosts.stat().st_ino
    rewrite_hosts(str(hosts), ["db"], "10.1.0.7")
    assert hosts.read_text() == "127.0.0.1\tlocalhost\n10.1.0.7\tdb abc123 mydb\n10.1.0.9\tother db\n"
    assert hosts.stat().st_ino == inode  # in place: a bind mount of it keeps seeing it
    rewrite_hosts(str(hosts), ["db"], None)
    assert hosts.read_text() == "127.0.0.1\tlocalhost\n10.1.0.9\tother db\n"
