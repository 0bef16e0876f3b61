"""Placement strategies: their ordering, the resource fit they share, and deterministic ties."""

from __future__ import annotations

import pytest

from berth.cluster.scheduler import (
    BinpackStrategy,
    ContainerInfo,
    ContainerSpec,
    Node,
    NoSuitableNode,
    RandomStrategy,
    SpreadStrategy,
    strategy_by_name,
)

GB = 1 << 30


def node(name: str, containers: int = 0, cpus: float = 4, mem: int = 8 * GB, rcpus: float = 0,
         rmem: int = 0) -> Node:
    return Node(id=f"id-{name}", name=name, total_cpus=cpus, total_memory=mem, reserved_cpus=rcpus,
                reserved_memory=rmem, containers=tuple(ContainerInfo(id=f"{name}-{i}") for i in range(containers)))


def names(nodes: list[Node]) -> list[str]:
    return [n.name for n in nodes]


@pytest.mark.parametrize(
    ("nodes", "spec", "expected"),
    [
        ([node("a", 2), node("b", 0), node("c", 1)], ContainerSpec(), ["b", "c", "a"]),
        # equal counts: the least used wins
        ([node("a", rmem=4 * GB), node("b", rmem=1 * GB)], ContainerSpec(memory=GB), ["b", "a"]),
        ([node("a", rcpus=3), node("b", rcpus=1)], ContainerSpec(), ["b", "a"]),
        # container count comes before usage
        ([node("a", 1), node("b", 0, rmem=7 * GB)], ContainerSpec(), ["b", "a"]),
        # full ties end on name
        ([node("c"), node("a"), node("b")], ContainerSpec(), ["a", "b", "c"]),
        # a node without room is left out
        ([node("a", rmem=8 * GB), node("b", 3)], ContainerSpec(memory=GB), ["b"]),
    ],
)
def test_spread(nodes: list[Node], spec: ContainerSpec, expected: list[str]) -> None:
    assert names(SpreadStrategy().rank(spec, nodes)) == expected


@pytest.mark.parametrize(
    ("nodes", "spec", "expected"),
    [
        # the fullest node that still fits comes first
        ([node("a", rmem=2 * GB), node("b", rmem=6 * GB)], ContainerSpec(memory=GB), ["b", "a"]),
        ([node("a", rmem=2 * GB), node("b", rmem=7 * GB + 1)], ContainerSpec(memory=GB), ["a"]),
        ([node("a", rcpus=1), node("b", rcpus=3)], ContainerSpec(cpu_shares=1), ["b", "a"]),
        ([node("a", rcpus=1), node("b", rcpus=3.5)], ContainerSpec(nano_cpus=1_000_000_000), ["a"]),
        ([node("a", rcpus=1), node("b", rcpus=3.5)], ContainerSpec(nano_cpus=500_000_000), ["b", "a"]),
        # equal usage: more containers first
        ([node("a", 1), node("b", 3)], ContainerSpec(), ["b", "a"]),
        # usage beats count
        ([node("a", 5), node("b", 0, rmem=4 * GB)], ContainerSpec(), ["b", "a"]),
        ([node("c"), node("a"), node("b")], ContainerSpec(), ["a", "b", "c"]),
    ],
)
def test_binpack(nodes: list[Node], spec: ContainerSpec, expected: list[str]) -> None:
    assert names(BinpackStrategy().rank(spec, nodes)) == expected


def test_nothing_fits() -> None:
    nodes = [node("a", mem=GB), node("b", cpus=1)]
    with pytest.raises(NoSuitableNode, match="no resources available to schedule container"):
        BinpackStrategy().rank(ContainerSpec(memory=2 * GB, cpu_shares=2), nodes)


def test_unknown_capacity_is_unbounded() -> None:
    n = Node(id="x", name="x")  # capacity not reported
    assert names(SpreadStrategy().rank(ContainerSpec(memory=64 * GB, nano_cpus=8 * 10**9), [n])) == ["x"]


def test_random_is_seedable_and_order_independent() -> None:
    nodes = [node(c) for c in "abcdef"]
    first = names(RandomStrategy(seed=7).rank(ContainerSpec(), nodes))
    again = names(RandomStrategy(seed=7).rank(ContainerSpec(), list(reversed(nodes))))
    assert first == again
    assert sorted(first) == list("abcdef")
    seen = {tuple(names(RandomStrategy(seed=s).rank(ContainerSpec(), nodes))) for s in range(20)}
    assert len(seen) > 1


def test_random_respects_fit() -> None:
    nodes = [node("a", mem=GB), node("b")]
    for seed in range(10):
        assert names(RandomStrategy(seed).rank(ContainerSpec(memory=2 * GB), nodes)) == ["b"]


@pytest.mark.parametrize(("name", "cls"), [("spread", SpreadStrategy), ("binpack", BinpackStrategy),
                                           ("random", RandomStrategy)])
def test_by_name(name: str, cls: type) -> None:
    s = strategy_by_name(name, seed=1)
    assert isinstance(s, cls) and s.name == name


def test_by_name_unknown() -> None:
    with pytest.raises(ValueError, match="unknown scheduling strategy"):
        strategy_by_name("roundrobin")
