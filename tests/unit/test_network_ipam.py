"""IPAM: subnets out of pools that avoid what is in use, gateways, ranges, fixed and reused addresses."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from berth.common.errors import Conflict, InvalidParameter
from berth.network.ipam import DEFAULT_POOLS, FOREIGN_RANGES, Ipam, PoolExhausted, host_routes

N = IPv4Network


def test_default_pool_avoids_docker_podman_and_host_routes() -> None:
    ipam = Ipam()
    na = ipam.add_network("a", host_routes=[N("0.0.0.0/0"), N("10.210.0.0/24"), N("172.17.0.0/16")])
    assert na.subnet == N("10.210.1.0/24")  # 10.210.0.0/24 is routed on the host; the default route is not
    assert na.gateway == IPv4Address("10.210.1.1")
    for pool, _ in DEFAULT_POOLS:
        assert not any(pool.overlaps(r) for r in FOREIGN_RANGES)


def test_pool_skips_foreign_ranges_when_configured_over_them() -> None:
    ipam = Ipam(pools=[(N("172.16.0.0/12"), 16)])  # 172.16.0.0/16 .. 172.31.0.0/16
    assert ipam.add_network("a").subnet == N("172.16.0.0/16")
    with pytest.raises(PoolExhausted, match="fully subnetted"):
        ipam.add_network("b")  # 172.17..172.31 are docker's


def test_subnets_are_reused_and_exhaustion_is_clear() -> None:
    ipam = Ipam(pools=[(N("10.99.0.0/23"), 24)], avoid=())
    a = ipam.add_network("a").subnet
    b = ipam.add_network("b").subnet
    assert {a, b} == {N("10.99.0.0/24"), N("10.99.1.0/24")}
    with pytest.raises(PoolExhausted, match=r"pools have been fully subnetted \(10.99.0.0/23\)"):
        ipam.add_network("c")
    ipam.remove_network("a")
    assert ipam.add_network("c").subnet == a


def test_user_subnet_gateway_and_range() -> None:
    ipam = Ipam()
    na = ipam.add_network("u", subnet="10.50.0.0/16", gateway="10.50.255.254", ip_range="10.50.7.0/30")
    assert na.gateway == IPv4Address("10.50.255.254")
    got = [ipam.allocate("u") for _ in range(4)]
    # A range has no network or broadcast address of its own.
    assert got == [IPv4Address(f"10.50.7.{i}") for i in range(4)]
    with pytest.raises(PoolExhausted, match="10.50.7.0/30 is exhausted"):
        ipam.allocate("u")
    # A user subnet's own addresses keep off the auto pool, and overlapping subnets are refused.
    with pytest.raises(Conflict, match="Pool overlaps with other one on this address space"):
        ipam.add_network("v", subnet="10.50.3.0/24")


@pytest.mark.parametrize("kw,msg", [
    ({"subnet": "10.1.0.0/24", "gateway": "10.2.0.1"}, "does not belong to subnet"),
    ({"subnet": "10.1.0.0/24", "ip_range": "10.1.0.0/16"}, "not inside subnet"),
    ({"gateway": "10.1.0.1"}, "need --subnet"),
    ({"subnet": "nonsense"}, "invalid subnet"),
])
def test_bad_requests(kw: dict[str, str], msg: str) -> None:
    with pytest.raises(InvalidParameter, match=msg):
        Ipam().add_network("x", kw.get("subnet"), kw.get("gateway"), kw.get("ip_range"))


def test_fixed_ip_only_on_user_subnets_and_only_once() -> None:
    ipam = Ipam()
    ipam.add_network("auto")
    with pytest.raises(InvalidParameter, match="only when connecting to networks with user configured"):
        ipam.allocate("auto", "10.210.0.9")
    ipam.add_network("user", subnet="10.60.0.0/24")
    assert ipam.allocate("user", "10.60.0.9") == IPv4Address("10.60.0.9")
    with pytest.raises(Conflict, match="Address already in use"):
        ipam.allocate("user", "10.60.0.9")
    with pytest.raises(Conflict):
        ipam.allocate("user", "10.60.0.1")  # the gateway
    with pytest.raises(InvalidParameter, match="does not belong"):
        ipam.allocate("user", "10.61.0.9")
    assert ipam.allocate("user") == IPv4Address("10.60.0.2")  # dynamic skips gateway and fixed ones


def test_next_fit_then_reuse_after_wrap() -> None:
    ipam = Ipam()
    ipam.add_network("n", subnet="10.70.0.0/29")  # hosts .1-.6, .1 the gateway
    a = [ipam.allocate("n") for _ in range(3)]
    assert [str(x) for x in a] == ["10.70.0.2", "10.70.0.3", "10.70.0.4"]
    ipam.release("n", a[0])
    assert str(ipam.allocate("n")) == "10.70.0.5"  # not the one just freed
    assert str(ipam.allocate("n")) == "10.70.0.6"
    assert str(ipam.allocate("n")) == "10.70.0.2"  # freed, reused once the cursor wrapped
    with pytest.raises(PoolExhausted, match="no available IPv4 addresses"):
        ipam.allocate("n")


def test_state_round_trips_through_json() -> None:
    ipam = Ipam()
    ipam.add_network("a", subnet="10.80.0.0/24", ip_range="10.80.0.128/25")
    ipam.add_network("b")
    first = ipam.allocate("a")
    ipam.allocate("b")
    again = Ipam()
    again.load(json.loads(json.dumps(ipam.to_dict())))
    assert again.to_dict() == ipam.to_dict()
    assert again.allocate("a") == first + 1  # the cursor survived
    with pytest.raises(Conflict):
        again.add_network("c", subnet="10.80.0.0/16")
    assert again.add_network("c").subnet == N("10.210.1.0/24")


def test_host_routes_reads_proc_net_route(tmp_path: Path) -> None:
    f = tmp_path / "route"
    f.write_text("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
                 "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
                 "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
                 "docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n")
    assert host_routes(str(f)) == [N("0.0.0.0/0"), N("192.0.2.0/24"), N("172.17.0.0/16")]
    assert host_routes(str(tmp_path / "missing")) == []
