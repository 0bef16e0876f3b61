"""Placement strategies: rank the nodes that passed the filters, best first.

Every strategy first drops nodes that cannot hold the container's CPU and memory reservation
(a node with no declared capacity is treated as unbounded for that resource), then orders the
rest. Ties end on (name, id) so the same cluster state always gives the same answer.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Protocol

from berth.cluster.scheduler.errors import NoSuitableNode
from berth.cluster.scheduler.model import ContainerSpec, Node


class Strategy(Protocol):
    """Orders candidate nodes best first; raises NoSuitableNode when none has room."""

    name: str

    def rank(self, spec: ContainerSpec, nodes: Sequence[Node]) -> list[Node]: ...


def _usage(reserved: float, request: float, total: float, slack: float = 0.0) -> float | None:
    """Fraction of `total` in use once `request` is added, or None when it would not fit.

    A request of zero always fits, even on an overcommitted node: the engine would run it too.
    """
    if request <= 0:
        return reserved / total if total > 0 else 0.0
    if total <= 0:
        return 0.0  # capacity unknown: do not refuse, do not prefer
    if reserved + request > total + slack:
        return None
    return (reserved + request) / total


def _scores(spec: ContainerSpec, node: Node) -> tuple[float, float] | None:
    # CPUs are fractional (NanoCpus), so sums like 0.1 + 0.2 need a hair of slack; bytes need none.
    cpu = _usage(node.reserved_cpus, spec.cpus, node.total_cpus, slack=1e-9)
    mem = _usage(node.reserved_memory, spec.memory, node.total_memory)
    if cpu is None or mem is None:
        return None
    return cpu, mem


def fitting(spec: ContainerSpec, nodes: Sequence[Node]) -> list[tuple[Node, float]]:
    """Nodes with room, each with its CPU plus memory usage after placement (0..2)."""
    out = []
    for node in nodes:
        scores = _scores(spec, node)
        if scores is not None:
            out.append((node, scores[0] + scores[1]))
    if not out:
        raise NoSuitableNode("no resources available to schedule container")
    return out


class SpreadStrategy:
    """Fewest containers first, then the least used; so replicas fan out across nodes."""

    name = "spread"

    def rank(self, spec: ContainerSpec, nodes: Sequence[Node]) -> list[Node]:
        ranked = sorted(fitting(spec, nodes), key=lambda p: (len(p[0].containers), p[1], p[0].name, p[0].id))
        return [n for n, _ in ranked]


class BinpackStrategy:
    """Most used node that still fits first, then most containers; so nodes fill one at a time."""

    name = "binpack"

    def rank(self, spec: ContainerSpec, nodes: Sequence[Node]) -> list[Node]:
        ranked = sorted(fitting(spec, nodes), key=lambda p: (-p[1], -len(p[0].containers), p[0].name, p[0].id))
        return [n for n, _ in ranked]


class RandomStrategy:
    """A shuffle of the nodes with room; a seed makes it repeatable (for tests and benchmarks)."""

    name = "random"

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)

    def rank(self, spec: ContainerSpec, nodes: Sequence[Node]) -> list[Node]:
        # Sorting first makes the outcome depend on the seed alone, not on the order nodes arrive in.
        ranked = sorted((n for n, _ in fitting(spec, nodes)), key=lambda n: (n.name, n.id))
        self._rng.shuffle(ranked)
        return ranked


def strategy_by_name(name: str, seed: int | None = None) -> Strategy:
    """For `--strategy spread|binpack|random` on the manager's command line."""
    if name == "spread":
        return SpreadStrategy()
    if name == "binpack":
        return BinpackStrategy()
    if name == "random":
        return RandomStrategy(seed)
    raise ValueError(f"unknown scheduling strategy {name!r} (want spread, binpack or random)")
