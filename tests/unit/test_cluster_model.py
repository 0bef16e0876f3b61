"""The scheduler's data: a create body read into a ContainerSpec, and how nodes answer lookups."""

from __future__ import annotations

import json

import pytest

from berth.cluster.scheduler import ContainerInfo, ContainerSpec, Node, PortBinding
from berth.cluster.scheduler.expr import CONSTRAINTS_LABEL


def test_from_create_body() -> None:
    body = {
        "Image": "nginx:1.25",
        "Env": ["A=1", "constraint:type==frontend", "affinity:image==~nginx", "reschedule:on-node-failure"],
        "Labels": {"app": "web"},
        "ExposedPorts": {"80/tcp": {}, "53": {}},
        "HostConfig": {
            "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}, {"HostIp": "10.0.0.1", "HostPort": ""}],
                             "53/udp": [{"HostPort": "5353"}]},
            "Links": ["db:database"], "VolumesFrom": ["data:ro"], "NetworkMode": "bridge",
            "Memory": 268435456, "NanoCpus": 500_000_000, "CpuShares": 512,
        },
    }
    spec = ContainerSpec.from_create_body(body, name="web")
    assert spec.name == "web" and spec.image == "nginx:1.25"
    assert spec.env == ("A=1",)
    assert spec.constraints == ("type==frontend",)
    assert spec.affinities == ("image==~nginx",)
    assert spec.reschedule_policies == ("on-node-failure",)
    assert json.loads(spec.labels[CONSTRAINTS_LABEL]) == ["type==frontend"]
    assert spec.labels["app"] == "web"
    assert spec.port_bindings == (
        PortBinding(5353, "udp", "", 53), PortBinding(8080, "tcp", "", 80), PortBinding(0, "tcp", "10.0.0.1", 80))
    assert spec.exposed_ports == ("53/tcp", "80/tcp")
    assert spec.links == ("db:database",) and spec.volumes_from == ("data:ro",)
    assert spec.network_mode == "bridge"
    assert spec.memory == 268435456
    assert spec.cpus == 0.5  # NanoCpus wins over CpuShares


def test_from_minimal_body() -> None:
    spec = ContainerSpec.from_create_body({"Image": "busybox"})
    assert spec == ContainerSpec(image="busybox")
    assert spec.cpus == 0


def test_cpu_shares_count_cpus_as_in_swarm() -> None:
    assert ContainerSpec(cpu_shares=2).cpus == 2.0


def test_port_range_uses_its_first_port() -> None:
    spec = ContainerSpec.from_create_body({"HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "8000-8010"}]}}})
    assert spec.port_bindings[0].host_port == 8000


def test_attributes_merge_builtins_and_labels() -> None:
    n = Node(id="i", name="n1", labels={"type": "db"}, storage_driver="overlay2", kernel_version="6.1",
             operating_system="Debian")
    assert n.attributes() == {"node": "n1", "storagedriver": "overlay2", "kernelversion": "6.1",
                              "operatingsystem": "Debian", "type": "db"}


N = Node(id="i", name="n1", containers=(
    ContainerInfo(id="abcdef01", names=("/web",)),
    ContainerInfo(id="abc99999", names=("/db", "/web/db")),
))


@pytest.mark.parametrize(
    ("ref", "found"),
    [("web", "abcdef01"), ("/web", "abcdef01"), ("/n1/web", "abcdef01"), ("abcdef01", "abcdef01"),
     ("abcd", "abcdef01"), ("abc", None), ("db", "abc99999"), ("web/db", "abc99999"), ("nope", None), ("", None)],
)
def test_container_lookup(ref: str, found: str | None) -> None:
    c = N.container(ref)
    assert (c.id if c else None) == found


def test_with_container_is_a_new_node() -> None:
    n = Node(id="i", name="n", reserved_cpus=1, reserved_memory=10)
    m = n.with_container(ContainerInfo(id="x"), cpus=0.5, memory=5)
    assert (m.reserved_cpus, m.reserved_memory, len(m.containers)) == (1.5, 15, 1)
    assert n.containers == () and n.reserved_memory == 10


def test_placeholder_of_host_network_holds_exposed_ports() -> None:
    spec = ContainerSpec(name="x", network_mode="host", exposed_ports=("80/tcp",), port_bindings=(PortBinding(80),))
    p = spec.placeholder("id")
    assert p.ports == () and p.exposed_ports == ("80/tcp",) and p.names == ("/x",)
