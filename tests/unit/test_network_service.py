"""The daemon's network service over a fake driver: records, IPAM state and plans persist."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from berth.common.db import Database
from berth.common.errors import Conflict, Forbidden, InvalidParameter
from berth.daemon.events import EventBus
from berth.daemon.model import Container
from berth.daemon.network_state import NetworkSettingsOptions, parse_pool
from berth.daemon.network_views import ports_view
from berth.daemon.networks import NetworkService
from berth.network.model import Endpoint, NetworkConfig, PortBinding


class FakeDriver:
    def __init__(self) -> None:
        self.nets: dict[str, NetworkConfig] = {}
        self.restored = 0

    def restore(self, networks: list[NetworkConfig], endpoints: list[Endpoint]) -> list[str]:
        self.restored += 1
        self.nets = {n.id: n for n in networks}
        return []

    def create_network(self, net: NetworkConfig) -> None:
        self.nets[net.id] = net

    def delete_network(self, network_id: str) -> None:
        self.nets.pop(network_id, None)

    def connect(self, container_id: str, network_id: str, netns: str, ifname: str, ip: IPv4Address,
                ports: tuple[PortBinding, ...] = (), default_route: bool = True) -> Endpoint:
        raise AssertionError("not used here")

    def disconnect(self, ep: Endpoint, delete_link: bool = True) -> None:
        raise AssertionError("not used here")


def _svc(tmp_path: Path, drv: FakeDriver) -> NetworkService:
    opts = NetworkSettingsOptions("bt0", "BT0", [(IPv4Network("10.230.0.0/23"), 27)])
    return NetworkService(Database(str(tmp_path / "db")), str(tmp_path / "run"), EventBus(), opts,
                          driver_factory=lambda prefix: drv)


def test_predefined_create_persist_remove(tmp_path: Path) -> None:
    drv = FakeDriver()
    svc = _svc(tmp_path, drv)
    assert sorted(n.name for n in svc.all()) == ["bridge", "host", "none"]
    assert drv.restored == 0  # nothing loaded until a network is used
    br = svc.get("bridge")
    assert br.bridge == "bt0" and svc.ipam.networks[br.id].subnet.subnet_of(IPv4Network("10.230.0.0/23"))
    out = asyncio.run(svc.create({"Name": "n1", "Labels": {"a": "b"},
                                  "Options": {"com.docker.network.bridge.enable_icc": "false"}}))
    nid = out["Id"]
    assert drv.nets[nid].bridge == f"br-{nid[:12]}" and drv.nets[nid].icc is False
    with pytest.raises(Conflict):
        asyncio.run(svc.create({"Name": "n1"}))
    with pytest.raises(Forbidden):
        asyncio.run(svc.remove("bridge", []))
    again = _svc(tmp_path, FakeDriver())  # a restarted daemon
    assert again.get("n1").labels == {"a": "b"}
    assert again.ipam.networks[nid].subnet == svc.ipam.networks[nid].subnet
    assert again.get("bridge").id == br.id
    asyncio.run(svc.remove("n1", []))
    assert nid not in drv.nets and "n1" not in {n.name for n in _svc(tmp_path, FakeDriver()).all()}


def test_plan_and_ports(tmp_path: Path) -> None:
    svc = _svc(tmp_path, FakeDriver())
    assert set(svc.plan("default", {"default": {}})) == {"bridge"}
    assert set(svc.plan("host", None)) == {"host"}
    assert svc.plan("container:abc", None) == {}
    with pytest.raises(InvalidParameter, match="network nosuch not found"):
        svc.plan("nosuch", None)
    with pytest.raises(InvalidParameter, match="user defined networks only"):
        svc.plan("default", {"default": {"IPAMConfig": {"IPv4Address": "10.230.0.9"}}})
    c = Container(id="c" * 64, name="x", created="", image="i", image_id="i", top_chain=None, path="p",
                  args=[], config={"ExposedPorts": {"80/tcp": {}, "53/udp": {}}},
                  host_config={"PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]},
                               "PublishAllPorts": True})
    assert svc.port_bindings(c) == (PortBinding(80, "tcp", "0.0.0.0", 8080), PortBinding(53, "udp", "0.0.0.0", 0))
    assert ports_view(c, (PortBinding(80, "tcp", "0.0.0.0", 8080),)) == {
        "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}], "53/udp": None}


def test_parse_pool() -> None:
    assert parse_pool("10.210.0.0/16") == (IPv4Network("10.210.0.0/16"), 24)
    assert parse_pool("10.212.4.0/23,size=27") == (IPv4Network("10.212.4.0/23"), 27)
    with pytest.raises(ValueError):
        parse_pool("10.0.0.0/24,size=16")
