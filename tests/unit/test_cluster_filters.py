"""Each scheduler filter on its own: what passes, what is refused, and Swarm's words for it."""

from __future__ import annotations

import pytest

from berth.cluster.scheduler import (
    AffinityFilter,
    ConstraintFilter,
    ContainerInfo,
    ContainerSpec,
    DependencyFilter,
    HealthFilter,
    ImageInfo,
    Node,
    NoSuitableNode,
    PortBinding,
    PortFilter,
    SlotsFilter,
    default_filters,
)


def node(name: str, *containers: ContainerInfo, healthy: bool = True, images: tuple[ImageInfo, ...] = (),
         **labels: str) -> Node:
    return Node(id=f"id-{name}", name=name, labels=labels, healthy=healthy, containers=containers,
                storage_driver="overlay2", kernel_version="6.1.0-18-amd64",
                operating_system="Debian GNU/Linux 12 (bookworm)", images=images)


def ctr(name: str, image: str = "busybox", ports: tuple[PortBinding, ...] = (), net: str = "default",
        exposed: tuple[str, ...] = (), **labels: str) -> ContainerInfo:
    return ContainerInfo(id=f"{name}0123456789", names=(f"/{name}",), image=image, labels=labels,
                         ports=ports, network_mode=net, exposed_ports=exposed)


def names(nodes: list[Node]) -> list[str]:
    return [n.name for n in nodes]


def test_default_filter_order_is_swarms() -> None:
    assert [f.name for f in default_filters()] == [
        "health", "port", "containerslots", "dependency", "affinity", "constraint"]


# --- health ---

def test_health_drops_unhealthy() -> None:
    nodes = [node("a"), node("b", healthy=False), node("c")]
    assert names(HealthFilter().filter(ContainerSpec(), nodes, True)) == ["a", "c"]


def test_health_none_healthy() -> None:
    with pytest.raises(NoSuitableNode, match="No healthy node available in the cluster"):
        HealthFilter().filter(ContainerSpec(), [node("a", healthy=False)], True)


# --- port ---

P = PortBinding


@pytest.mark.parametrize(
    ("held", "want", "conflict"),
    [
        (P(8080), P(8080), True),
        (P(8080), P(8081), False),
        (P(8080, "tcp"), P(8080, "udp"), False),  # protocols are separate port spaces
        (P(8080, "udp"), P(8080, "udp"), True),
        (P(8080, host_ip="10.0.0.1"), P(8080, host_ip="10.0.0.2"), False),
        (P(8080, host_ip="10.0.0.1"), P(8080, host_ip="10.0.0.1"), True),
        (P(8080, host_ip="10.0.0.1"), P(8080), True),  # the request binds every address
        (P(8080), P(8080, host_ip="10.0.0.1"), True),  # the holder binds every address
        (P(8080, host_ip="0.0.0.0"), P(8080, host_ip="10.0.0.1"), True),
        (P(0), P(8080), False),  # an ephemeral binding holds nothing yet
    ],
)
def test_port_bridge(held: PortBinding, want: PortBinding, conflict: bool) -> None:
    nodes = [node("a", ctr("x", ports=(held,)))]
    spec = ContainerSpec(port_bindings=(want,))
    if conflict:
        with pytest.raises(NoSuitableNode, match=f"unable to find a node with port {want.host_port} available$"):
            PortFilter().filter(spec, nodes, True)
    else:
        assert names(PortFilter().filter(spec, nodes, True)) == ["a"]


def test_port_ephemeral_request_never_conflicts() -> None:
    nodes = [node("a", ctr("x", ports=(P(8080),)))]
    assert names(PortFilter().filter(ContainerSpec(port_bindings=(P(0),)), nodes, True)) == ["a"]


def test_port_picks_nodes_where_free() -> None:
    nodes = [node("a", ctr("x", ports=(P(80),))), node("b"), node("c", ctr("y", ports=(P(443),)))]
    spec = ContainerSpec(port_bindings=(P(80), P(443)))
    assert names(PortFilter().filter(spec, nodes, True)) == ["b"]


def test_port_host_network_request_against_exposed() -> None:
    nodes = [node("a", ctr("x", net="host", exposed=("80/tcp",))), node("b", ctr("y", ports=(P(80),))),
             node("c")]
    spec = ContainerSpec(network_mode="host", exposed_ports=("80/tcp",))
    assert names(PortFilter().filter(spec, nodes, True)) == ["c"]


def test_port_host_network_exhausted_message() -> None:
    nodes = [node("a", ctr("x", net="host", exposed=("80/tcp",)))]
    spec = ContainerSpec(network_mode="host", exposed_ports=("80/tcp",))
    with pytest.raises(NoSuitableNode, match="unable to find a node with port 80/tcp available in the Host mode"):
        PortFilter().filter(spec, nodes, True)


def test_port_bridge_request_against_host_network_container() -> None:
    nodes = [node("a", ctr("x", net="host", exposed=("8080/tcp", "53/udp"))), node("b")]
    assert names(PortFilter().filter(ContainerSpec(port_bindings=(P(8080),)), nodes, True)) == ["b"]
    assert names(PortFilter().filter(ContainerSpec(port_bindings=(P(53),)), nodes, True)) == ["a", "b"]


# --- containerslots ---

@pytest.mark.parametrize(
    ("slots", "running", "passes"),
    [("2", 1, True), ("2", 2, False), ("0", 0, False), ("junk", 9, True), ("", 9, True), (None, 50, True)],
)
def test_slots(slots: str | None, running: int, passes: bool) -> None:
    labels = {"containerslots": slots} if slots is not None else {}
    n = Node(id="a", name="a", labels=labels, containers=tuple(ctr(f"c{i}") for i in range(running)))
    if passes:
        assert names(SlotsFilter().filter(ContainerSpec(), [n], True)) == ["a"]
    else:
        with pytest.raises(NoSuitableNode, match="container slot"):
            SlotsFilter().filter(ContainerSpec(), [n], True)


# --- dependency ---

DEP_NODES = [node("a", ctr("db"), ctr("cache")), node("b", ctr("web")), node("c")]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (ContainerSpec(), ["a", "b", "c"]),
        (ContainerSpec(volumes_from=("db",)), ["a"]),
        (ContainerSpec(volumes_from=("db:ro",)), ["a"]),
        (ContainerSpec(links=("db:database",)), ["a"]),
        (ContainerSpec(links=("/web",)), ["b"]),
        (ContainerSpec(network_mode="container:web"), ["b"]),
        (ContainerSpec(network_mode="container:db0123"), ["a"]),  # an ID prefix
        (ContainerSpec(volumes_from=("db",), links=("cache",)), ["a"]),
    ],
)
def test_dependency(spec: ContainerSpec, expected: list[str]) -> None:
    assert names(DependencyFilter().filter(spec, DEP_NODES, True)) == expected


def test_dependency_split_across_nodes_fails_naming_them() -> None:
    spec = ContainerSpec(volumes_from=("db",), links=("web:w",), network_mode="container:cache")
    with pytest.raises(NoSuitableNode) as info:
        DependencyFilter().filter(spec, DEP_NODES, True)
    assert info.value.message == (
        "Unable to find a node containing all dependencies: --volumes-from=db --link=web:w --net=container:cache")


# --- affinity ---

AFF_NODES = [
    node("n1", ctr("a", image="redis:7", role="cache")),
    node("n2", ctr("b", image="nginx"), images=(ImageInfo("sha256:abc", ("busybox:latest",)),)),
    node("n3"),
]


@pytest.mark.parametrize(
    ("affinity", "soft", "expected"),
    [
        ("container==a", True, ["n1"]),
        ("container==a0123456789", True, ["n1"]),  # by ID
        ("container!=a", True, ["n2", "n3"]),
        ("container==/^[ab]$/", True, ["n1", "n2"]),
        ("container==?", True, ["n1", "n2"]),
        ("image==busybox", True, ["n2"]),
        ("image==busybox:latest", True, ["n2"]),
        ("image==sha256:abc", True, ["n2"]),
        ("image==redis", True, ["n1"]),  # from the running container's image
        ("image!=redis", True, ["n2", "n3"]),
        ("role==cache", True, ["n1"]),  # other keys are container labels
        ("role!=cache", True, ["n2", "n3"]),
        ("container==~a", True, ["n1"]),
        ("container==~zzz", False, ["n1", "n2", "n3"]),  # soft, honoured by the first pass only
    ],
)
def test_affinity(affinity: str, soft: bool, expected: list[str]) -> None:
    spec = ContainerSpec(affinities=(affinity,))
    assert names(AffinityFilter().filter(spec, AFF_NODES, soft)) == expected


def test_affinity_unmatched_message() -> None:
    with pytest.raises(NoSuitableNode, match="unable to find a node that satisfies the affinity container==zzz"):
        AffinityFilter().filter(ContainerSpec(affinities=("container==zzz",)), AFF_NODES, True)


def test_affinity_soft_refuses_in_first_pass() -> None:
    with pytest.raises(NoSuitableNode, match="affinity container==~zzz"):
        AffinityFilter().filter(ContainerSpec(affinities=("container==~zzz",)), AFF_NODES, True)


# --- constraint ---

CON_NODES = [
    node("front-1", type="frontend", region="us-east", storage="ssd"),
    node("front-2", type="frontend", region="eu-west"),
    node("db-1", type="db", region="us-east", Zone="a"),
]


@pytest.mark.parametrize(
    ("constraints", "expected"),
    [
        (["type==frontend"], ["front-1", "front-2"]),
        (["type!=frontend"], ["db-1"]),
        (["type==frontend", "region==us-east"], ["front-1"]),
        (["region==us-*"], ["front-1", "db-1"]),
        (["region==/west/"], ["front-2"]),
        (["storage!=ssd"], ["front-2", "db-1"]),  # a missing label is not ssd
        (["storage==*"], ["front-1", "front-2", "db-1"]),  # nor does `*` need one
        (["node==db-1"], ["db-1"]),
        (["node==id-front-2"], ["front-2"]),  # by ID
        (["node!=front-*"], ["db-1"]),
        (["storagedriver==overlay2"], ["front-1", "front-2", "db-1"]),
        (["kernelversion==6.1.*"], ["front-1", "front-2", "db-1"]),
        (["operatingsystem==/bookworm/"], ["front-1", "front-2", "db-1"]),
        (["zone==a"], ["db-1"]),  # a label spelled with capitals
        (["node.labels.type == frontend"], ["front-1", "front-2"]),
        (["node.labels.type != frontend", "engine.labels.region==us-east"], ["db-1"]),
        (["type==~frontend"], ["front-1", "front-2"]),
    ],
)
def test_constraint(constraints: list[str], expected: list[str]) -> None:
    spec = ContainerSpec(constraints=tuple(constraints))
    assert names(ConstraintFilter().filter(spec, CON_NODES, True)) == expected


def test_constraint_unmatched_names_it() -> None:
    with pytest.raises(NoSuitableNode) as info:
        ConstraintFilter().filter(ContainerSpec(constraints=("type==nope",)), CON_NODES, True)
    assert info.value.message == "unable to find a node that satisfies the constraint type==nope"


def test_constraint_soft_skipped_on_second_pass() -> None:
    spec = ContainerSpec(constraints=("type==~nope", "region==us-east"))
    assert names(ConstraintFilter().filter(spec, CON_NODES, False)) == ["front-1", "db-1"]
    with pytest.raises(NoSuitableNode, match="constraint type==~nope"):
        ConstraintFilter().filter(spec, CON_NODES, True)


def test_constraint_bad_expression_is_invalid_parameter() -> None:
    with pytest.raises(Exception, match="One of operator") as info:
        ConstraintFilter().filter(ContainerSpec(constraints=("type=frontend",)), CON_NODES, True)
    assert getattr(info.value, "status", None) == 400
