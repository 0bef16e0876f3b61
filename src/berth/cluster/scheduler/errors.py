"""Why a container could not be placed; the texts are classic Swarm's so users' scripts still match."""

from __future__ import annotations

from typing import TYPE_CHECKING

from berth.common.errors import BerthError, InvalidParameter

if TYPE_CHECKING:
    from berth.cluster.scheduler.model import Node


class InvalidExpression(InvalidParameter):
    """A constraint or affinity that does not parse (400: the request is wrong, not the cluster)."""


class NoSuitableNode(BerthError):
    """No node passes the filters or has room; classic Swarm answered these with a 500 too."""


class PartialPlacement(NoSuitableNode):
    """`select_many` placed some containers before running out; `placed` says where they went."""

    def __init__(self, message: str, placed: list[Node]) -> None:
        super().__init__(message)
        self.placed = placed
