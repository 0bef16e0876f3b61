"""Pure parts of the network package: `-p` parsing, iptables rendering, names, and import cost."""

from __future__ import annotations

import subprocess
import sys
from ipaddress import IPv4Address, IPv4Network

import pytest

from berth.common.errors import InvalidParameter
from berth.network.iptables import Chains, Published, port_change, render
from berth.network.model import Endpoint, NetworkConfig, PortBinding, bridge_name, host_ifname, mac_for_ip
from berth.network.ports import parse_publish

P = PortBinding


@pytest.mark.parametrize("spec,want", [
    ("80", [P(80)]),
    ("8080:80", [P(80, "tcp", "0.0.0.0", 8080)]),
    ("127.0.0.1:8080:80/udp", [P(80, "udp", "127.0.0.1", 8080)]),
    ("127.0.0.1::80", [P(80, "tcp", "127.0.0.1", 0)]),
    ("8000-8001:80-81", [P(80, "tcp", "0.0.0.0", 8000), P(81, "tcp", "0.0.0.0", 8001)]),
    ("80-81/udp", [P(80, "udp"), P(81, "udp")]),
])
def test_parse_publish(spec: str, want: list[PortBinding]) -> None:
    assert parse_publish(spec) == want


@pytest.mark.parametrize("bad", ["", "x", "0", "70000", "1:2:3:4", "8000-8002:80-81", "1.2.3:80:80",
                                 "80/sctp"])
def test_parse_publish_rejects(bad: str) -> None:
    with pytest.raises(InvalidParameter):
        parse_publish(bad)


def test_names_and_macs() -> None:
    assert mac_for_ip(IPv4Address("172.17.0.2")) == "02:42:ac:11:00:02"  # what dockerd gives
    name = host_ifname("c" * 64, "n" * 64)
    assert len(name) <= 15 and name == host_ifname("c" * 64, "n" * 64) != host_ifname("c" * 64, "m" * 64)
    assert bridge_name("0123456789abcdef") == "br-0123456789ab"
    assert bridge_name("x", default=True) == "berth0"
    assert bridge_name("x", {"com.docker.network.bridge.name": "mybr"}) == "mybr"


def test_records_round_trip() -> None:
    net = NetworkConfig("n", "br-n", IPv4Network("10.1.0.0/24"), IPv4Address("10.1.0.1"), 1400, True, False)
    assert NetworkConfig.from_dict(net.to_dict()) == net
    ep = Endpoint("c", "n", "/run/x", "eth0", IPv4Address("10.1.0.2"), 24, "02:42:0a:01:00:02", "vbx",
                  (P(80, "tcp", "0.0.0.0", 8080),))
    assert Endpoint.from_dict(ep.to_dict()) == ep


def _net(bridge: str, subnet: str, **kw: bool) -> NetworkConfig:
    s = IPv4Network(subnet)
    return NetworkConfig(bridge, bridge, s, s.network_address + 1, **kw)  # type: ignore[arg-type]


def test_render_declares_every_chain_and_nothing_else_when_empty() -> None:
    out = render(Chains("B"), [], [])
    assert out["filter"] == "*filter\n:B-FORWARD - [0:0]\n:B-ISOLATION-1 - [0:0]\n:B-ISOLATION-2 - [0:0]\n" \
                            ":B-PORTS - [0:0]\nCOMMIT\n"
    assert out["nat"] == "*nat\n:B-DNAT - [0:0]\n:B-POSTROUTING - [0:0]\nCOMMIT\n"


def test_render_network_kinds_and_ports() -> None:
    nets = [_net("bra", "10.1.0.0/24"), _net("brb", "10.2.0.0/24", icc=False),
            _net("brc", "10.3.0.0/24", internal=True)]
    pubs = [Published("bra", IPv4Address("10.1.0.2"), P(80, "tcp", "127.0.0.1", 8080)),
            Published("bra", IPv4Address("10.1.0.2"), P(53, "udp", "0.0.0.0", 5353))]
    out = render(Chains("B"), nets, pubs)
    f, n = out["filter"].splitlines(), out["nat"].splitlines()
    assert f.index("-A B-FORWARD -j B-ISOLATION-1") == 5  # isolation before any ACCEPT
    assert "-A B-FORWARD -i bra -o bra -j ACCEPT" in f
    assert "-A B-FORWARD -i brb -o brb -j DROP" in f  # enable_icc=false
    assert "-A B-FORWARD -i brc ! -o brc -j ACCEPT" not in f  # internal: no way out
    assert "-A B-ISOLATION-1 ! -d 10.3.0.0/24 -i brc -j DROP" in f
    assert "-A B-ISOLATION-2 -o bra -j DROP" in f
    assert "-A B-POSTROUTING -s 10.1.0.0/24 ! -o bra -j MASQUERADE" in n
    assert not any("10.3.0.0/24 ! -o brc -j MASQUERADE" in line for line in n)
    assert "-A B-DNAT -d 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.1.0.2:80" in n
    assert "-A B-DNAT -p udp -m udp --dport 5353 -j DNAT --to-destination 10.1.0.2:53" in n
    assert "-A B-PORTS -d 10.1.0.2/32 ! -i bra -o bra -p udp -m udp --dport 53 -j ACCEPT" in f
    hairpin = "-A B-POSTROUTING -s 10.1.0.2/32 -d 10.1.0.2/32 -p tcp -m tcp --dport 80 -j MASQUERADE"
    assert hairpin in n
    assert "-A B-POSTROUTING -s 127.0.0.0/8 -o bra -j MASQUERADE" in n  # publishing on 127.0.0.1
    assert render(Chains("B"), list(reversed(nets)), list(reversed(pubs))) == out  # order-independent


def test_port_changes_append_or_delete_without_declaring_chains() -> None:
    pub = Published("bra", IPv4Address("10.1.0.2"), P(80, "tcp", "0.0.0.0", 8080))
    add = port_change(Chains("B"), [pub], add=True)
    assert add.splitlines() == [
        "*filter", "-A B-PORTS -d 10.1.0.2/32 ! -i bra -o bra -p tcp -m tcp --dport 80 -j ACCEPT", "COMMIT",
        "*nat", "-A B-DNAT -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.1.0.2:80",
        "-A B-POSTROUTING -s 10.1.0.2/32 -d 10.1.0.2/32 -p tcp -m tcp --dport 80 -j MASQUERADE", "COMMIT"]
    assert port_change(Chains("B"), [pub], add=False) == add.replace("-A B-", "-D B-")
    assert port_change(Chains("B"), [], add=True) == ""


def test_light_modules_do_not_import_pyroute2() -> None:
    code = ("import sys, berth.network.model, berth.network.ipam, berth.network.ports, "
            "berth.network.iptables, berth.network.netns; print('pyroute2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
