"""The scheduler: filters narrow, the strategy ranks, soft expressions give way when they must."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from berth.cluster.scheduler.errors import NoSuitableNode, PartialPlacement
from berth.cluster.scheduler.filters import Filter
from berth.cluster.scheduler.model import ContainerSpec, Node
from berth.cluster.scheduler.strategies import Strategy


class Scheduler:
    """Filters in order, then the strategy. Holds no cluster state: every call gets the nodes it may use."""

    def __init__(self, filters: Sequence[Filter], strategy: Strategy) -> None:
        self.filters = list(filters)
        self.strategy = strategy

    def rank(self, spec: ContainerSpec, nodes: Sequence[Node]) -> list[Node]:
        """All acceptable nodes, best first.

        First with soft expressions honoured; if that leaves nothing, again without them, as
        classic Swarm did. The second pass's error is the one reported, since it names a hard cause.
        """
        try:
            return self._rank(spec, nodes, soft=True)
        except NoSuitableNode:
            return self._rank(spec, nodes, soft=False)

    def _rank(self, spec: ContainerSpec, nodes: Sequence[Node], soft: bool) -> list[Node]:
        candidates = list(nodes)
        for f in self.filters:
            candidates = f.filter(spec, candidates, soft)
        if not candidates:
            raise NoSuitableNode("No healthy node available in the cluster")
        return self.strategy.rank(spec, candidates)

    def select(self, spec: ContainerSpec, nodes: Sequence[Node]) -> Node:
        return self.rank(spec, nodes)[0]

    def select_many(self, spec: ContainerSpec, nodes: Sequence[Node], count: int) -> list[Node]:
        """Place `count` copies of `spec` (scaling a service), named `<name>-<n>` when it has a name.

        The names keep name-based affinities and dependencies between the copies unambiguous.
        """
        if count == 1 or not spec.name:
            return self.select_each([spec] * count, nodes)
        return self.select_each([dataclasses.replace(spec, name=f"{spec.name}-{i}") for i in range(1, count + 1)],
                                nodes)

    def select_each(self, specs: Sequence[ContainerSpec], nodes: Sequence[Node]) -> list[Node]:
        """Place containers one after another, each seeing the ones placed before it.

        Each placed container is added to its node (ports, labels, name, reservations) before the
        next is scheduled, so port conflicts, slots, affinities and `--link`s to earlier ones in the
        batch all count. Returns the chosen nodes as passed in, in order. Raises PartialPlacement,
        carrying the nodes chosen so far, at the first container that cannot be placed.
        """
        state = {n.id: n for n in nodes}
        originals = dict(state)
        chosen: list[Node] = []
        for i, spec in enumerate(specs):
            try:
                node = self.select(spec, list(state.values()))
            except NoSuitableNode as err:
                raise PartialPlacement(err.message, chosen) from err
            state[node.id] = node.with_container(spec.placeholder(f"pending-{i}"), spec.cpus, spec.memory)
            chosen.append(originals[node.id])
        return chosen
