"""The machine driver interface: how a host running berthd is made, reached, changed and removed.

A driver owns everything it creates for a machine and records how to find it again in the
machine's `MachineRecord.details`; the rest of the package (plan, apply, commands) only calls the
methods below and talks to the engine through `berth.client`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from .model import EngineSpec, MachineError, MachineSpec

# Every step is bounded: a command, a connection or a wait gives up after these many seconds.
STEP_TIMEOUT = 30.0


@dataclass
class MachineRecord:
    """What exists: the spec last applied and the driver's own notes on how to reach it."""

    spec: MachineSpec
    details: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.time)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def driver(self) -> str:
        return self.spec.driver

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec.to_dict(), "details": dict(self.details), "created": self.created}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MachineRecord:
        return cls(MachineSpec.from_dict(d["spec"]), dict(d.get("details") or {}), float(d.get("created", 0)))


class Driver(Protocol):
    """Makes and runs machines of one kind.

    Lifecycle: `create(spec)` goes through the phases connect -> install -> configure -> start ->
    verify and returns the record to keep; after it, `start`/`stop` any number of times, and while
    the machine exists `reload` (labels only: the running berthd re-reads its configuration, no
    restart, containers untouched) or `reconfigure` (other engine changes: berthd restarts,
    containers keep running). `remove` comes last: it is idempotent and leaves nothing the driver
    made behind (namespaces, links, mounts, directories, processes).

    Invariants: every method is bounded in time (no step waits longer than STEP_TIMEOUT); every
    failure is a MachineError naming the machine and the phase; `status` never raises.
    """

    name: str

    def create(self, spec: MachineSpec) -> MachineRecord: ...

    def start(self, record: MachineRecord) -> MachineRecord: ...

    def stop(self, record: MachineRecord) -> None: ...

    def reload(self, record: MachineRecord, spec: MachineSpec) -> MachineRecord: ...

    def reconfigure(self, record: MachineRecord, spec: MachineSpec) -> MachineRecord: ...

    def remove(self, record: MachineRecord) -> None: ...

    def status(self, record: MachineRecord) -> str:
        """`running`, `stopped` or `missing` (the host itself is gone)."""
        ...

    def url(self, record: MachineRecord) -> str:
        """The engine URL for DOCKER_HOST (`unix://`, `tcp://` or `ssh://`)."""
        ...

    def ip(self, record: MachineRecord) -> str: ...

    def shell_argv(self, record: MachineRecord, command: list[str]) -> list[str]:
        """The command line that runs `command` (or a shell) on the machine."""
        ...


def engine_flags(engine: EngineSpec, machine: str, berthd_help: str, advertise: str = "") -> list[str]:
    """berthd's flags for an engine spec: labels, registries, the cluster store, then `options` as
    `--key value`. `advertise` is the machine's address, the default `--cluster-advertise`.

    `berthd_help` is the engine's `--help` text: registry mirrors are passed only to an engine that
    has `--registry-mirror`, and refused (configure phase) by one that has not.
    """
    args: list[str] = []
    for label in engine.label_list():
        args += ["--label", label]
    for reg in engine.insecure_registries:
        args += ["--insecure-registry", reg]
    if engine.registry_mirrors:
        if "--registry-mirror" not in berthd_help:
            raise MachineError(machine, "configure", "this berthd has no --registry-mirror: registry_mirrors "
                               f"{list(engine.registry_mirrors)} cannot be applied")
        for mirror in engine.registry_mirrors:
            args += ["--registry-mirror", mirror]
    if engine.cluster is not None:
        if not (engine.cluster.advertise or advertise):
            raise MachineError(machine, "configure", "engine.cluster needs `advertise` (an interface or address "
                               "the other machines reach) on this driver")
        args += ["--cluster-store", engine.cluster.store_url(),
                 "--cluster-advertise", engine.cluster.advertise or advertise,
                 "--cluster-store-opt", f"discovery.ttl={engine.cluster.ttl}"]
    for key, value in engine.options.items():
        for v in value if isinstance(value, list) else [value]:
            if v is True:
                args.append(f"--{key}")
            elif v is not False:
                args += [f"--{key}", str(v)]
    return args


@contextmanager
def phase(machine: str, name: str) -> Iterator[None]:
    """Turn whatever fails inside into a MachineError naming the machine and the phase."""
    try:
        yield
    except MachineError:
        raise
    except Exception as e:  # noqa: BLE001 - every failure must name the machine and phase
        raise MachineError(machine, name, _describe(e)) from e


def _describe(e: Exception) -> str:
    import subprocess

    if isinstance(e, subprocess.TimeoutExpired):
        return f"`{' '.join(map(str, e.cmd))}` did not finish within {e.timeout:.0f} s"
    if isinstance(e, subprocess.CalledProcessError):
        err = (e.stderr or b"").decode(errors="replace").strip() if isinstance(e.stderr, bytes) else (e.stderr or "")
        return f"`{' '.join(map(str, e.cmd))}` failed ({e.returncode}): {err.strip()}"
    return str(e) or type(e).__name__


class UnavailableDriver:
    """A driver the schema knows but this berth cannot drive (yet): every call fails at connect."""

    def __init__(self, name: str, why: str) -> None:
        self.name = name
        self.why = why

    def _fail(self, machine: str) -> MachineError:
        return MachineError(machine, "connect", self.why)

    def create(self, spec: MachineSpec) -> MachineRecord:
        raise self._fail(spec.name)

    def start(self, record: MachineRecord) -> MachineRecord:
        raise self._fail(record.name)

    def stop(self, record: MachineRecord) -> None:
        raise self._fail(record.name)

    def reload(self, record: MachineRecord, spec: MachineSpec) -> MachineRecord:
        raise self._fail(record.name)

    def reconfigure(self, record: MachineRecord, spec: MachineSpec) -> MachineRecord:
        raise self._fail(record.name)

    def remove(self, record: MachineRecord) -> None:
        raise self._fail(record.name)

    def status(self, record: MachineRecord) -> str:
        return "unknown"

    def url(self, record: MachineRecord) -> str:
        return str(record.details.get("url", ""))

    def ip(self, record: MachineRecord) -> str:
        return str(record.spec.driver_options.get("host", ""))

    def shell_argv(self, record: MachineRecord, command: list[str]) -> list[str]:
        raise self._fail(record.name)
