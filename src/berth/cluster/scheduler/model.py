"""What the scheduler sees: nodes with their containers, and the container being placed.

Plain frozen data; the manager builds these from its node registry and the create request.
Placement never mutates a Node: `Node.with_container` returns the node as it will be.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from berth.cluster.scheduler.expr import extract_placement


@dataclass(frozen=True)
class PortBinding:
    """A host port, as published (`-p 8080:80/tcp`); host_port 0 means the engine picks one."""

    host_port: int
    proto: str = "tcp"
    host_ip: str = ""
    container_port: int = 0

    @property
    def binds_all_interfaces(self) -> bool:
        return self.host_ip in ("", "0.0.0.0", "::")


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    names: tuple[str, ...] = ()
    image: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[PortBinding, ...] = ()  # published host ports (requested or actual)
    exposed_ports: tuple[str, ...] = ()  # "8080/tcp"; these are host ports when network_mode is host
    network_mode: str = "default"
    state: str = "running"

    @property
    def name(self) -> str:
        return self.names[0].lstrip("/") if self.names else ""


@dataclass(frozen=True)
class ImageInfo:
    id: str
    repo_tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Node:
    id: str
    name: str
    address: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)  # engine labels
    storage_driver: str = ""
    kernel_version: str = ""
    operating_system: str = ""
    healthy: bool = True
    total_cpus: float = 0.0
    total_memory: int = 0
    reserved_cpus: float = 0.0
    reserved_memory: int = 0
    containers: tuple[ContainerInfo, ...] = ()
    images: tuple[ImageInfo, ...] = ()

    def attributes(self) -> dict[str, str]:
        """The labels constraints see: built-ins, then engine labels over them (as Swarm merged them)."""
        attrs = {
            "node": self.name,
            "storagedriver": self.storage_driver,
            "kernelversion": self.kernel_version,
            "operatingsystem": self.operating_system,
        }
        attrs.update(self.labels)
        return attrs

    def container(self, ref: str) -> ContainerInfo | None:
        """Find a container by full ID, name (with or without `/`, or `/<node>/<name>`) or unique ID prefix."""
        ref = ref.strip()
        if ref.startswith(f"/{self.name}/"):
            ref = ref[len(self.name) + 2 :]
        ref = ref.lstrip("/")
        if not ref:
            return None
        for c in self.containers:
            if c.id == ref or ref in (n.lstrip("/") for n in c.names):
                return c
        prefixed = [c for c in self.containers if c.id.startswith(ref)]
        return prefixed[0] if len(prefixed) == 1 else None

    def with_container(self, info: ContainerInfo, cpus: float = 0.0, memory: int = 0) -> Node:
        return dataclasses.replace(
            self,
            containers=(*self.containers, info),
            reserved_cpus=self.reserved_cpus + cpus,
            reserved_memory=self.reserved_memory + memory,
        )


@dataclass(frozen=True)
class ContainerSpec:
    """The parts of a create request that placement depends on."""

    name: str = ""
    image: str = ""
    env: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    cpu_shares: int = 0
    nano_cpus: int = 0
    memory: int = 0
    port_bindings: tuple[PortBinding, ...] = ()
    exposed_ports: tuple[str, ...] = ()
    links: tuple[str, ...] = ()
    volumes_from: tuple[str, ...] = ()
    network_mode: str = "default"
    constraints: tuple[str, ...] = ()
    affinities: tuple[str, ...] = ()
    reschedule_policies: tuple[str, ...] = ()

    @property
    def cpus(self) -> float:
        # NanoCpus is an exact CPU count. Classic Swarm read CpuShares (`-c N`) as N CPUs to reserve;
        # kept so that requests written for Swarm reserve what they did there.
        if self.nano_cpus:
            return self.nano_cpus / 1e9
        return float(self.cpu_shares)

    @property
    def host_network(self) -> bool:
        return self.network_mode == "host"

    def placeholder(self, container_id: str) -> ContainerInfo:
        """The container as it will appear on its node once created, for scheduling the next one."""
        return ContainerInfo(
            id=container_id,
            names=(f"/{self.name}",) if self.name else (),
            image=self.image,
            labels=dict(self.labels),
            ports=() if self.host_network else self.port_bindings,
            exposed_ports=self.exposed_ports,
            network_mode=self.network_mode,
            state="created",
        )

    @classmethod
    def from_create_body(cls, body: Mapping[str, Any], name: str = "") -> ContainerSpec:
        """Build from a `POST /containers/create` body; env and labels come back rewritten."""
        host: Mapping[str, Any] = body.get("HostConfig") or {}
        placement = extract_placement(list(body.get("Env") or ()), dict(body.get("Labels") or {}))
        bindings: list[PortBinding] = []
        for port, entries in sorted((host.get("PortBindings") or {}).items()):
            number, _, proto = str(port).partition("/")
            for entry in entries or ():
                raw = str((entry or {}).get("HostPort") or "0")
                bindings.append(PortBinding(
                    host_port=int(raw.split("-", 1)[0] or 0),  # a range: its first port is the one Swarm checked
                    proto=proto or "tcp",
                    host_ip=str((entry or {}).get("HostIp") or ""),
                    container_port=int(number),
                ))
        exposed = {p if "/" in p else f"{p}/tcp" for p in (body.get("ExposedPorts") or {})}
        return cls(
            name=name,
            image=str(body.get("Image") or ""),
            env=placement.env,
            labels=placement.labels,
            cpu_shares=int(host.get("CpuShares") or body.get("CpuShares") or 0),
            nano_cpus=int(host.get("NanoCpus") or 0),
            memory=int(host.get("Memory") or body.get("Memory") or 0),
            port_bindings=tuple(bindings),
            exposed_ports=tuple(sorted(exposed)),
            links=tuple(host.get("Links") or ()),
            volumes_from=tuple(host.get("VolumesFrom") or ()),
            network_mode=str(host.get("NetworkMode") or "default"),
            constraints=placement.constraints,
            affinities=placement.affinities,
            reschedule_policies=placement.reschedule_policies,
        )
