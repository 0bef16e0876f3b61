"""What a machine is meant to be (`MachineSpec`, from machines.yml) and the errors of this package.

Pure data: no I/O. A spec's `to_dict` is what the state directory records, so that `plan` can
compare the file with what was last applied without asking the machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PHASES = ("connect", "install", "configure", "start", "verify")


class MachineConfigError(Exception):
    """machines.yml (or its .env) is unreadable or invalid; the message names the file and path."""


class MachineError(Exception):
    """An operation on one machine failed; names the machine and the phase it failed in."""

    def __init__(self, machine: str, phase: str, message: str) -> None:
        super().__init__(f"{machine}: {phase}: {message}")
        self.machine = machine
        self.phase = phase
        self.message = message


OptionValue = str | bool | int | float | list[str]


@dataclass(frozen=True)
class ClusterSpec:
    """`engine.cluster`: the engine keeps its overlay networks in this etcd (`--cluster-store`) and a
    join agent registers it there as a node of the cluster's managers."""

    etcd: tuple[str, ...]  # client URLs, http://HOST:PORT
    advertise: str = ""  # --cluster-advertise: an interface or address; default the machine's address
    prefix: str = "/berth/cluster/"
    ttl: int = 3  # seconds the node (and its overlay endpoints) stays healthy unrenewed

    def store_url(self) -> str:
        return "etcd://" + ",".join(u.split("://", 1)[-1].rstrip("/") for u in self.etcd)

    def to_dict(self) -> dict[str, Any]:
        return {"etcd": list(self.etcd), "advertise": self.advertise, "prefix": self.prefix, "ttl": self.ttl}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClusterSpec:
        etcd = d["etcd"]
        urls = [u.strip() for u in etcd.split(",")] if isinstance(etcd, str) else [str(u) for u in etcd]
        return cls(tuple(u for u in urls if u), str(d.get("advertise") or ""),
                   str(d.get("prefix") or "/berth/cluster/"), int(d.get("ttl") or 3))


@dataclass(frozen=True)
class EngineSpec:
    """How the engine (berthd) on a machine is configured."""

    labels: dict[str, str] = field(default_factory=dict)
    insecure_registries: tuple[str, ...] = ()
    registry_mirrors: tuple[str, ...] = ()
    data_root: str | None = None
    options: dict[str, OptionValue] = field(default_factory=dict)
    cluster: ClusterSpec | None = None

    def label_list(self) -> list[str]:
        """As berthd's `--label` and docker info's `Labels` spell them: `key=value`."""
        return [f"{k}={v}" for k, v in self.labels.items()]

    def to_dict(self) -> dict[str, Any]:
        return {"labels": dict(self.labels), "insecure_registries": list(self.insecure_registries),
                "registry_mirrors": list(self.registry_mirrors), "data_root": self.data_root,
                "options": dict(self.options), "cluster": self.cluster.to_dict() if self.cluster else None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EngineSpec:
        return cls(dict(d.get("labels") or {}), tuple(d.get("insecure_registries") or ()),
                   tuple(d.get("registry_mirrors") or ()), d.get("data_root"), dict(d.get("options") or {}),
                   ClusterSpec.from_dict(d["cluster"]) if d.get("cluster") else None)

    def without_labels(self) -> dict[str, Any]:
        d = self.to_dict()
        del d["labels"]
        return d


@dataclass(frozen=True)
class MachineSpec:
    """One machine as machines.yml declares it, with the `defaults:` block merged in."""

    name: str
    driver: str
    driver_options: dict[str, Any] = field(default_factory=dict)
    engine: EngineSpec = field(default_factory=EngineSpec)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "driver": self.driver, "driver_options": dict(self.driver_options),
                "engine": self.engine.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MachineSpec:
        return cls(d["name"], d["driver"], dict(d.get("driver_options") or {}),
                   EngineSpec.from_dict(d.get("engine") or {}))
