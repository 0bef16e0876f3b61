"""Pure parts of the cluster's networks and machines: the `engine.cluster` entry of machines.yml and
the berthd flags it gives, and which manager paths name a `node/name` reference."""

from __future__ import annotations

import pytest

from berth.cluster.serve import _QUALIFIED, _qualified_shape
from berth.machine.config import parse
from berth.machine.driver import engine_flags
from berth.machine.model import EngineSpec, MachineConfigError

YML = """\
defaults:
  driver: netns
  engine:
    cluster: {etcd: "http://10.1.0.1:2379,http://10.1.0.2:2379", ttl: 5}
machines:
  a: {address: 10.1.0.11/24}
  b:
    address: 10.1.0.12/24
    engine:
      cluster: {etcd: [http://10.1.0.1:2379], advertise: eth1, prefix: /other/}
"""


def test_cluster_entry_parses_and_gives_berthd_its_store() -> None:
    specs = parse(YML, "machines.yml", {})
    a, b = specs["a"].engine.cluster, specs["b"].engine.cluster
    assert a is not None and b is not None
    assert a.etcd == ("http://10.1.0.1:2379", "http://10.1.0.2:2379") and a.ttl == 5 and a.advertise == ""
    assert b.etcd == ("http://10.1.0.1:2379",) and b.advertise == "eth1" and b.prefix == "/other/"
    assert EngineSpec.from_dict(specs["a"].engine.to_dict()) == specs["a"].engine  # recorded and read back
    flags = engine_flags(specs["a"].engine, "a", "", advertise="10.1.0.11")
    assert flags == ["--cluster-store", "etcd://10.1.0.1:2379,10.1.0.2:2379", "--cluster-advertise", "10.1.0.11",
                     "--cluster-store-opt", "discovery.ttl=5"]
    assert "eth1" in engine_flags(specs["b"].engine, "b", "", advertise="10.1.0.12")


def test_cluster_entry_is_validated() -> None:
    bad = YML.replace("advertise: eth1, ", "advertise: eth1, colour: red, ")
    with pytest.raises(MachineConfigError, match="colour"):
        parse(bad, "machines.yml", {})
    with pytest.raises(MachineConfigError):
        parse(YML.replace('etcd: "http://10.1.0.1:2379,http://10.1.0.2:2379"', "etcd: 10.1.0.1:2379"),
              "machines.yml", {})


@pytest.mark.parametrize(("method", "path", "qualified"), [
    ("GET", "/v1.41/containers/fe-1/web/json", True),
    ("GET", "/containers/fe-1/json", False),  # a container named like a node
    ("DELETE", "/containers/fe-1/web", True),
    ("GET", "/v1.45/networks/fe-2/loc", True),
    ("POST", "/networks/fe-2/connect", False),  # connect to a network named like a node
    ("POST", "/networks/fe-2/loc/connect", True),
])
def test_node_qualified_paths(method: str, path: str, qualified: bool) -> None:
    m = _QUALIFIED.match(path)
    assert m is not None and _qualified_shape(m["kind"], method, m["rest"]) == qualified
    assert _QUALIFIED.match("/containers/abc") is None
