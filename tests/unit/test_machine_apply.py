"""apply with a fake driver: parallel, one machine's failure never stops the others, errors name
the machine and the phase, and what was done is recorded so that the next plan is empty."""

from __future__ import annotations

import threading

from berth.machine.apply import Drivers, apply
from berth.machine.driver import MachineRecord
from berth.machine.model import EngineSpec, MachineError, MachineSpec
from berth.machine.plan import plan
from berth.machine.state import StateStore


class FakeDriver:
    """Machines in a dict; `broken` names fail at install."""

    name = "netns"

    def __init__(self, broken: set[str]) -> None:
        self.broken = broken
        self.running: dict[str, MachineSpec] = {}
        self.calls: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def _log(self, op: str, name: str) -> None:
        with self.lock:
            self.calls.append((op, name))

    def create(self, spec: MachineSpec) -> MachineRecord:
        self._log("create", spec.name)
        if spec.name in self.broken:
            raise MachineError(spec.name, "install", "no room")
        self.running[spec.name] = spec
        return MachineRecord(spec, {"url": f"unix:///fake/{spec.name}"})

    def start(self, record: MachineRecord) -> MachineRecord:
        self._log("start", record.name)
        self.running[record.name] = record.spec
        return record

    def stop(self, record: MachineRecord) -> None:
        self._log("stop", record.name)
        self.running.pop(record.name, None)

    def reload(self, record: MachineRecord, spec: MachineSpec) -> MachineRecord:
        self._log("reload", spec.name)
        self.running[spec.name] = spec
        return MachineRecord(spec, record.details)

    def reconfigure(self, record: MachineRecord, spec: MachineSpec) -> MachineRecord:
        self._log("reconfigure", spec.name)
        self.running[spec.name] = spec
        return MachineRecord(spec, record.details)

    def remove(self, record: MachineRecord) -> None:
        self._log("remove", record.name)
        self.running.pop(record.name, None)

    def status(self, record: MachineRecord) -> str:
        return "running" if record.name in self.running else "stopped"

    def url(self, record: MachineRecord) -> str:
        return str(record.details["url"])

    def ip(self, record: MachineRecord) -> str:
        return "10.0.0.1"

    def shell_argv(self, record: MachineRecord, command: list[str]) -> list[str]:
        return command


def spec(name: str, **labels: str) -> MachineSpec:
    return MachineSpec(name, "netns", {"address": "10.250.0.11/24"}, EngineSpec(labels=labels or {"t": "x"}))


def replan(store: StateStore, fake: FakeDriver, desired: dict[str, MachineSpec], prune: bool = False):  # type: ignore[no-untyped-def]
    records = store.all()
    return plan(desired, {n: r.spec for n, r in records.items()},
                {n: fake.status(r) == "running" for n, r in records.items()}, prune)


def test_one_failure_does_not_stop_the_others(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store, fake = StateStore(str(tmp_path)), FakeDriver({"b"})
    drivers = Drivers(store, {"netns": fake})
    desired = {n: spec(n) for n in ("a", "b", "c")}
    outcomes = apply(replan(store, fake, desired), store, drivers)
    errors = {o.action.name: o.error for o in outcomes if o.error}
    assert set(errors) == {"b"} and str(errors["b"]) == "b: install: no room"
    assert errors["b"].phase == "install"
    assert store.names() == ["a", "c"]
    # the next plan retries only the failed one
    assert [(a.kind, a.name) for a in replan(store, fake, desired).actions] == [("create", "b")]


def test_second_apply_does_nothing_and_labels_reload(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store, fake = StateStore(str(tmp_path)), FakeDriver(set())
    drivers = Drivers(store, {"netns": fake})
    desired = {"a": spec("a"), "b": spec("b")}
    apply(replan(store, fake, desired), store, drivers)
    fake.calls.clear()
    assert apply(replan(store, fake, desired), store, drivers) == [] and fake.calls == []
    desired["b"] = spec("b", t="y")
    outcomes = apply(replan(store, fake, desired), store, drivers)
    assert [o.line() for o in outcomes] == ["~ b: changed"]
    assert fake.calls == [("reload", "b")]
    assert store.load("b").spec.engine.labels == {"t": "y"}
    assert not replan(store, fake, desired)


def test_prune_removes_and_forgets(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store, fake = StateStore(str(tmp_path)), FakeDriver(set())
    drivers = Drivers(store, {"netns": fake})
    apply(replan(store, fake, {"a": spec("a"), "b": spec("b")}), store, drivers)
    outcomes = apply(replan(store, fake, {"a": spec("a")}, prune=True), store, drivers)
    assert [o.line() for o in outcomes] == ["- b: removed"]
    assert store.names() == ["a"] and "b" not in fake.running
