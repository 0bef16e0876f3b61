"""Pure parts of overlay networks: the cluster store's options, subnet and VNI choice, the
iptables rule for overlay bridges."""

from __future__ import annotations

import json
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from berth.common.errors import Conflict, InvalidParameter
from berth.daemon.main import _cluster_settings, parse_args
from berth.daemon.overlay import _free_subnet, _parse_vni, parse_store
from berth.network.iptables import Chains, render


def test_parse_store() -> None:
    assert parse_store("etcd://10.0.0.1:2379") == ["http://10.0.0.1:2379"]
    assert parse_store("etcd://a:1,b:2/") == ["http://a:1", "http://b:2"]
    for bad in ("consul://a:1", "10.0.0.1:2379", "etcd://"):
        with pytest.raises(ValueError):
            parse_store(bad)


def test_free_subnet_skips_overlaps() -> None:
    assert _free_subnet([]) == IPv4Network("10.209.0.0/24")
    taken = [IPv4Network("10.209.0.0/24"), IPv4Network("10.209.1.128/25")]
    assert _free_subnet(taken) == IPv4Network("10.209.2.0/24")
    with pytest.raises(Conflict):
        _free_subnet([IPv4Network("10.209.0.0/16")])


def test_parse_vni() -> None:
    assert _parse_vni(None) is None and _parse_vni("4242") == 4242 and _parse_vni("5000,5001") == 5000
    for bad in ("0", "x", str(1 << 24)):
        with pytest.raises(InvalidParameter):
            _parse_vni(bad)


def test_overlay_bridges_accepted_first() -> None:
    f = render(Chains("B"), [], [], overlay=True)["filter"].splitlines()
    assert f[5] == "-A B-FORWARD -i ov-+ -o ov-+ -j ACCEPT"
    assert not any("ov-+" in line for line in render(Chains("B"), [], [])["filter"].splitlines())


def test_cluster_settings_from_flags_or_config_file_not_both(tmp_path: Path) -> None:
    args = parse_args(["--cluster-store", "etcd://h:1", "--cluster-advertise", "eth0",
                       "--cluster-store-opt", "discovery.ttl=5"])
    assert _cluster_settings(args) == ("etcd://h:1", "eth0", {"discovery.ttl": "5"})
    cfg = tmp_path / "d.json"
    cfg.write_text(json.dumps({"cluster-store": "etcd://f:2", "cluster-advertise": "10.0.0.9"}))
    assert _cluster_settings(parse_args(["--config-file", str(cfg)])) == ("etcd://f:2", "10.0.0.9", {})
    with pytest.raises(SystemExit, match="both as a flag and in the configuration file: cluster-store"):
        _cluster_settings(parse_args(["--config-file", str(cfg), "--cluster-store", "etcd://h:1"]))
    assert _cluster_settings(parse_args([])) == (None, None, {})
