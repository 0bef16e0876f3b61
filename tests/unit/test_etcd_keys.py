"""Pure pieces of the etcd client and the cluster's records: key ranges, record encoding, addresses."""

from __future__ import annotations

import json

import pytest

from berth.cluster.join import parse_labels
from berth.cluster.serve import parse_addr
from berth.cluster.store import ContainerRecord
from berth.etcd import KeyValue, prefix_end


@pytest.mark.parametrize(("prefix", "end"), [
    (b"/a/", b"/a0"), (b"a\xff", b"b"), (b"\xff\xff", b"\0"), ("/berth/cluster/nodes/", b"/berth/cluster/nodes0"),
])
def test_prefix_end(prefix: bytes | str, end: bytes) -> None:
    assert prefix_end(prefix) == end


def test_record_round_trip_and_reservations() -> None:
    rec = ContainerRecord("r1", "fe-1", "web", {"HostConfig": {"NanoCpus": 1_500_000_000, "Memory": 64 << 20}},
                          reschedule=True)
    kv = KeyValue(b"/k", rec.encode().encode(), mod_revision=7)
    back = ContainerRecord.decode(kv)
    assert back.mod_revision == 7 and back.name == "web" and back.reschedule
    assert "mod_revision" not in json.loads(rec.encode())
    assert back.cpus == 1.5 and back.memory == 64 << 20
    assert ContainerRecord("r2", "n", "", {"HostConfig": {"CpuShares": 2}}).cpus == 2.0


def test_parse_addr() -> None:
    assert parse_addr("unix:///tmp/m.sock") == ("unix", "/tmp/m.sock", 0)
    assert parse_addr("tcp://127.0.0.1:2380") == ("tcp", "127.0.0.1", 2380)
    with pytest.raises(ValueError):
        parse_addr("tcp://127.0.0.1")
    with pytest.raises(ValueError):
        parse_addr("http://x")


def test_parse_labels() -> None:
    assert parse_labels(["type=frontend", "ssd", "a=b=c"]) == {"type": "frontend", "ssd": "", "a": "b=c"}
    assert parse_labels(None) == {}
