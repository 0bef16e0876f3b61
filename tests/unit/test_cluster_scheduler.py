"""The scheduler end to end on pure data: the issue's acceptance scenarios, and properties."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from berth.cluster.scheduler import (
    BinpackStrategy,
    ContainerInfo,
    ContainerSpec,
    Node,
    NoSuitableNode,
    PartialPlacement,
    PortBinding,
    RandomStrategy,
    Scheduler,
    SpreadStrategy,
    default_filters,
)

GB = 1 << 30


def cluster() -> list[Node]:
    """The demo's three hosts: two frontends and a db."""
    return [
        Node(id="id1", name="node-1", labels={"type": "frontend"}, total_cpus=4, total_memory=8 * GB),
        Node(id="id2", name="node-2", labels={"type": "frontend"}, total_cpus=4, total_memory=8 * GB),
        Node(id="id3", name="node-3", labels={"type": "db"}, total_cpus=4, total_memory=8 * GB),
    ]


def spread() -> Scheduler:
    return Scheduler(default_filters(), SpreadStrategy())


def test_spread_six_over_three() -> None:
    placed = spread().select_many(ContainerSpec(image="busybox"), cluster(), 6)
    assert Counter(n.name for n in placed) == {"node-1": 2, "node-2": 2, "node-3": 2}


def test_binpack_fills_one_node_first() -> None:
    sched = Scheduler(default_filters(), BinpackStrategy())
    placed = sched.select_many(ContainerSpec(image="busybox", memory=2 * GB), cluster(), 6)
    assert [n.name for n in placed] == ["node-1"] * 4 + ["node-2"] * 2


def test_binpack_without_reservations_stays_on_one_node() -> None:
    placed = Scheduler(default_filters(), BinpackStrategy()).select_many(ContainerSpec(), cluster(), 5)
    assert {n.name for n in placed} == {"node-1"}


def test_affinity_container_colocates() -> None:
    nodes = cluster()
    nodes[1] = Node(id="id2", name="node-2", labels={"type": "frontend"},
                    containers=(ContainerInfo(id="abc123", names=("/a",)),))
    spec = ContainerSpec.from_create_body({"Image": "busybox", "Env": ["affinity:container==a"]})
    assert spread().select(spec, nodes).name == "node-2"


def test_four_containers_on_port_8080_over_three_nodes() -> None:
    spec = ContainerSpec(image="nginx", port_bindings=(PortBinding(8080, container_port=80),))
    with pytest.raises(PartialPlacement) as info:
        spread().select_many(spec, cluster(), 4)
    assert sorted(n.name for n in info.value.placed) == ["node-1", "node-2", "node-3"]
    assert info.value.message == "unable to find a node with port 8080 available"


def test_constraint_frontend() -> None:
    spec = ContainerSpec.from_create_body({"Image": "busybox", "Env": ["constraint:type==frontend", "A=1"]})
    assert spec.env == ("A=1",)
    placed = spread().select_many(spec, cluster(), 4)
    assert Counter(n.name for n in placed) == {"node-1": 2, "node-2": 2}


def test_constraint_nope_fails_with_message() -> None:
    spec = ContainerSpec.from_create_body({"Image": "busybox", "Env": ["constraint:type==nope"]})
    with pytest.raises(NoSuitableNode) as info:
        spread().select(spec, cluster())
    assert info.value.message == "unable to find a node that satisfies the constraint type==nope"


def test_soft_constraint_nope_schedules_anyway() -> None:
    spec = ContainerSpec.from_create_body({"Image": "busybox", "Env": ["constraint:type==~nope"]})
    assert spread().select(spec, cluster()).name == "node-1"


def test_soft_constraint_honoured_when_possible() -> None:
    spec = ContainerSpec(constraints=("type==~db",))
    assert spread().select(spec, cluster()).name == "node-3"


def test_soft_gives_way_but_hard_still_holds() -> None:
    spec = ContainerSpec(constraints=("type==frontend", "node==~node-3"))
    assert {n.name for n in spread().select_many(spec, cluster(), 4)} == {"node-1", "node-2"}


def test_compose_placement_constraint() -> None:
    spec = ContainerSpec(constraints=("node.labels.type == db",))
    assert spread().select(spec, cluster()).name == "node-3"


def test_unhealthy_node_avoided_and_none_healthy() -> None:
    nodes = cluster()
    nodes[0] = Node(id="id1", name="node-1", healthy=False)
    assert "node-1" not in {n.name for n in spread().select_many(ContainerSpec(), nodes, 6)}
    with pytest.raises(NoSuitableNode, match="No healthy node available"):
        spread().select(ContainerSpec(), [Node(id="x", name="x", healthy=False)])


def test_no_nodes_at_all() -> None:
    with pytest.raises(NoSuitableNode):
        spread().select(ContainerSpec(), [])


def test_select_many_names_copies_for_affinity() -> None:
    # Each replica avoids the others by name: one per node, then no room.
    spec = ContainerSpec(name="web", affinities=("container!=web-*",))
    with pytest.raises(PartialPlacement) as info:
        spread().select_many(spec, cluster(), 4)
    assert len(info.value.placed) == 3


def test_select_many_dependency_follows_placeholder() -> None:
    sched = spread()
    nodes = cluster()
    db = sched.select_many(ContainerSpec(name="db"), nodes, 1)[0]
    nodes = [n.with_container(ContainerInfo(id="d1", names=("/db",))) if n.id == db.id else n for n in nodes]
    assert sched.select(ContainerSpec(links=("db:db",)), nodes).id == db.id


def test_random_is_repeatable_with_a_seed() -> None:
    a = Scheduler(default_filters(), RandomStrategy(3)).select_many(ContainerSpec(), cluster(), 10)
    b = Scheduler(default_filters(), RandomStrategy(3)).select_many(ContainerSpec(), cluster(), 10)
    assert [n.id for n in a] == [n.id for n in b]


# --- properties ---

node_st = st.builds(
    Node,
    id=st.uuids().map(str),
    name=st.text("abcdefgh", min_size=1, max_size=6),
    healthy=st.booleans(),
    total_cpus=st.integers(1, 16).map(float),
    total_memory=st.integers(1, 64).map(lambda g: g * GB),
    reserved_cpus=st.integers(0, 16).map(float),
    reserved_memory=st.integers(0, 64).map(lambda g: g * GB),
)
spec_st = st.builds(ContainerSpec, memory=st.integers(0, 16).map(lambda g: g * GB), cpu_shares=st.integers(0, 4))
strategy_st = st.sampled_from([SpreadStrategy(), BinpackStrategy(), RandomStrategy(0)])


@settings(max_examples=200, deadline=None)
@given(nodes=st.lists(node_st, max_size=6), spec=spec_st, strategy=strategy_st)
def test_never_places_on_unhealthy_or_overfull(nodes: list[Node], spec: ContainerSpec, strategy: object) -> None:
    sched = Scheduler(default_filters(), strategy)  # type: ignore[arg-type]
    try:
        chosen = sched.select(spec, nodes)
    except NoSuitableNode:
        assert not any(n.healthy and (spec.memory == 0 or n.reserved_memory + spec.memory <= n.total_memory)
                       and (spec.cpus == 0 or n.reserved_cpus + spec.cpus <= n.total_cpus) for n in nodes)
        return
    assert chosen.healthy
    # A request of zero reserves nothing, so only a real request must fit.
    assert spec.memory == 0 or chosen.reserved_memory + spec.memory <= chosen.total_memory
    assert spec.cpus == 0 or chosen.reserved_cpus + spec.cpus <= chosen.total_cpus


@settings(max_examples=100, deadline=None)
@given(nodes=st.lists(node_st.map(lambda n: Node(id=n.id, name=n.name, total_cpus=n.total_cpus,
                                                  total_memory=n.total_memory)), min_size=1, max_size=4),
       gb=st.integers(1, 8), count=st.integers(1, 20))
def test_binpack_never_exceeds_memory(nodes: list[Node], gb: int, count: int) -> None:
    spec = ContainerSpec(memory=gb * GB)
    try:
        placed = Scheduler(default_filters(), BinpackStrategy()).select_many(spec, nodes, count)
    except PartialPlacement as err:
        placed = err.placed
    per_node = Counter(n.id for n in placed)
    for n in nodes:
        assert per_node[n.id] * gb * GB <= n.total_memory


@settings(max_examples=100, deadline=None)
@given(count=st.integers(1, 30), width=st.integers(1, 5))
def test_spread_is_even(count: int, width: int) -> None:
    nodes = [Node(id=f"id{i}", name=f"n{i}") for i in range(width)]
    placed = spread().select_many(ContainerSpec(), nodes, count)
    counts = Counter(n.id for n in placed)
    assert max(counts.values()) - min(counts.get(n.id, 0) for n in nodes) <= 1


def test_select_each_sees_earlier_containers_in_the_batch() -> None:
    # A compose-like batch: the db goes to the db node, the app follows its link there.
    specs = [ContainerSpec(name="db", constraints=("type==db",)), ContainerSpec(name="app", links=("db",)),
             ContainerSpec(name="web", affinities=("container!=app",))]
    assert [n.name for n in spread().select_each(specs, cluster())] == ["node-3", "node-3", "node-1"]


def test_select_each_stops_at_the_first_failure() -> None:
    specs = [ContainerSpec(), ContainerSpec(constraints=("type==nope",)), ContainerSpec()]
    with pytest.raises(PartialPlacement, match="constraint type==nope") as info:
        spread().select_each(specs, cluster())
    assert [n.name for n in info.value.placed] == ["node-1"]


def test_select_does_not_change_the_nodes() -> None:
    nodes = cluster()
    spread().select_many(ContainerSpec(memory=GB), nodes, 3)
    assert nodes == cluster()
