"""Classic Swarm's placement, as a pure module: filters narrow the nodes, a strategy ranks the rest.

Nothing here does I/O; the manager hands in a snapshot of the nodes and gets a node back.
"""

from berth.cluster.scheduler.errors import InvalidExpression, NoSuitableNode, PartialPlacement
from berth.cluster.scheduler.expr import (
    AFFINITIES_LABEL,
    CONSTRAINTS_LABEL,
    RESCHEDULE_LABEL,
    Expr,
    Placement,
    extract_placement,
    parse_expr,
    parse_exprs,
)
from berth.cluster.scheduler.filters import (
    AffinityFilter,
    ConstraintFilter,
    DependencyFilter,
    Filter,
    HealthFilter,
    PortFilter,
    SlotsFilter,
    default_filters,
)
from berth.cluster.scheduler.model import ContainerInfo, ContainerSpec, ImageInfo, Node, PortBinding
from berth.cluster.scheduler.scheduler import Scheduler
from berth.cluster.scheduler.strategies import (
    BinpackStrategy,
    RandomStrategy,
    SpreadStrategy,
    Strategy,
    strategy_by_name,
)

__all__ = [
    "AFFINITIES_LABEL",
    "CONSTRAINTS_LABEL",
    "RESCHEDULE_LABEL",
    "AffinityFilter",
    "BinpackStrategy",
    "ConstraintFilter",
    "ContainerInfo",
    "ContainerSpec",
    "DependencyFilter",
    "Expr",
    "Filter",
    "HealthFilter",
    "ImageInfo",
    "InvalidExpression",
    "NoSuitableNode",
    "Node",
    "PartialPlacement",
    "Placement",
    "PortBinding",
    "PortFilter",
    "RandomStrategy",
    "Scheduler",
    "SlotsFilter",
    "SpreadStrategy",
    "Strategy",
    "default_filters",
    "extract_placement",
    "parse_expr",
    "parse_exprs",
    "strategy_by_name",
]
