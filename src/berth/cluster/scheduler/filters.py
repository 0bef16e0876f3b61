"""Node filters, each `(spec, nodes, soft) -> nodes`, chained in classic Swarm's order.

A filter returns the nodes that pass, or raises NoSuitableNode (with Swarm's text) when none does;
it never reorders nodes, so the strategy alone decides rank. `soft` is False on the scheduler's
second pass, when soft (`~`) expressions are to be ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from berth.cluster.scheduler.errors import NoSuitableNode
from berth.cluster.scheduler.expr import Expr, parse_exprs
from berth.cluster.scheduler.model import ContainerInfo, ContainerSpec, Node, PortBinding


class Filter(Protocol):
    """Narrows candidate nodes. Pure: same spec and nodes in, same nodes out, order kept."""

    name: str

    def filter(self, spec: ContainerSpec, nodes: Sequence[Node], soft: bool) -> list[Node]: ...


class HealthFilter:
    name = "health"

    def filter(self, spec: ContainerSpec, nodes: Sequence[Node], soft: bool) -> list[Node]:
        healthy = [n for n in nodes if n.healthy]
        if not healthy:
            raise NoSuitableNode("No healthy node available in the cluster")
        return healthy


def _proto(port: str) -> tuple[str, str]:
    number, _, proto = port.partition("/")
    return number, proto or "tcp"


def _host_ports(c: ContainerInfo) -> list[PortBinding]:
    """Every host port a container holds: published ones, or all exposed ones on the host network."""
    if c.network_mode == "host":
        held = []
        for port in c.exposed_ports:
            number, proto = _proto(port)
            if number.isdigit():
                held.append(PortBinding(int(number), proto))
        return held
    return [p for p in c.ports if p.host_port]


def _conflicts(want: PortBinding, held: PortBinding) -> bool:
    # Same port and protocol clash unless both bind distinct specific addresses.
    if want.host_port != held.host_port or want.proto != held.proto:
        return False
    return want.host_ip == held.host_ip or want.binds_all_interfaces or held.binds_all_interfaces


class PortFilter:
    name = "port"

    def filter(self, spec: ContainerSpec, nodes: Sequence[Node], soft: bool) -> list[Node]:
        wanted: list[tuple[PortBinding, str]] = []
        if spec.host_network:
            for port in spec.exposed_ports:
                number, proto = _proto(port)
                if number.isdigit():
                    wanted.append((PortBinding(int(number), proto), f"unable to find a node with port {port} "
                                   "available in the Host mode"))
        else:
            for b in spec.port_bindings:
                if b.host_port:  # an ephemeral port never conflicts
                    wanted.append((b, f"unable to find a node with port {b.host_port} available"))
        candidates = list(nodes)
        for want, message in wanted:
            candidates = [n for n in candidates if not self._in_use(n, want)]
            if not candidates:
                raise NoSuitableNode(message)
        return candidates

    @staticmethod
    def _in_use(node: Node, want: PortBinding) -> bool:
        # Stopped containers count: their bindings come back when they start (Swarm read HostConfig too).
        return any(_conflicts(want, held) for c in node.containers for held in _host_ports(c))


class SlotsFilter:
    name = "containerslots"

    def filter(self, spec: ContainerSpec, nodes: Sequence[Node], soft: bool) -> list[Node]:
        result = []
        for node in nodes:
            raw = node.labels.get("containerslots", "")
            # An unreadable label means no limit, as in Swarm: a typo must not take a node out.
            if not raw.strip().isdigit() or len(node.containers) < int(raw):
                result.append(node)
        if not result:
            raise NoSuitableNode("Unable to find a node with an available container slot")
        return result


def dependencies(spec: ContainerSpec) -> list[tuple[str, str]]:
    """(container reference, how it was asked for) for everything the container must sit next to."""
    deps = [(v.split(":", 1)[0], f"--volumes-from={v}") for v in spec.volumes_from]
    deps += [(link.split(":", 1)[0], f"--link={link}") for link in spec.links]
    if spec.network_mode.startswith("container:"):
        deps.append((spec.network_mode[len("container:") :], f"--net={spec.network_mode}"))
    return deps


class DependencyFilter:
    name = "dependency"

    def filter(self, spec: ContainerSpec, nodes: Sequence[Node], soft: bool) -> list[Node]:
        deps = dependencies(spec)
        if not deps or not nodes:
            return list(nodes)
        result = [n for n in nodes if all(n.container(ref) is not None for ref, _ in deps)]
        if not result:
            wanted = " ".join(flag for _, flag in deps)
            raise NoSuitableNode(f"Unable to find a node containing all dependencies: {wanted}")
        return result


def _image_names(node: Node) -> list[str]:
    names: list[str] = []
    for image in node.images:
        names.append(image.id)
        for tag in image.repo_tags:
            names += [tag, _repository(tag)]
    # A node running a container has its image even if the image list is stale.
    for c in node.containers:
        if c.image:
            names += [c.image, _repository(c.image)]
    return names


def _repository(ref: str) -> str:
    ref = ref.split("@", 1)[0]
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    return ref[:colon] if colon > slash else ref


def _affinity_candidates(expr: Expr, node: Node) -> list[str]:
    if expr.key == "container":
        out: list[str] = []
        for c in node.containers:
            if c.names:  # Swarm skipped nameless containers entirely, ID included
                out += [c.id, c.name]
        return out
    if expr.key == "image":
        return _image_names(node)
    return [c.labels.get(expr.key, "") for c in node.containers]


def _narrow(kind: str, exprs: list[Expr], nodes: Sequence[Node], soft: bool,
            candidates_of: _Candidates) -> list[Node]:
    result = list(nodes)
    for expr in exprs:
        if expr.soft and not soft:
            continue
        result = [n for n in result if expr.matches(*candidates_of(expr, n))]
        if not result:
            raise NoSuitableNode(f"unable to find a node that satisfies the {kind} {expr}")
    return result


class _Candidates(Protocol):
    def __call__(self, expr: Expr, node: Node) -> list[str]: ...


class AffinityFilter:
    name = "affinity"

    def filter(self, spec: ContainerSpec, nodes: Sequence[Node], soft: bool) -> list[Node]:
        return _narrow("affinity", parse_exprs(spec.affinities), nodes, soft, _affinity_candidates)


def _constraint_candidates(expr: Expr, node: Node) -> list[str]:
    if expr.key == "node":  # pins to a node by ID or name
        return [node.id, node.name]
    attrs = node.attributes()
    if expr.key in attrs:
        return [attrs[expr.key]]
    # Keys are lower-cased when parsed; find a label spelled with capitals all the same.
    for key, value in attrs.items():
        if key.lower() == expr.key:
            return [value]
    return [""]  # a missing label is the empty string, so `key!=x` accepts the node as in Swarm


class ConstraintFilter:
    name = "constraint"

    def filter(self, spec: ContainerSpec, nodes: Sequence[Node], soft: bool) -> list[Node]:
        return _narrow("constraint", parse_exprs(spec.constraints), nodes, soft, _constraint_candidates)


def default_filters() -> list[Filter]:
    """Classic Swarm's order: cheap node checks, then container-aware ones, then expressions."""
    return [HealthFilter(), PortFilter(), SlotsFilter(), DependencyFilter(), AffinityFilter(),
            ConstraintFilter()]
