"""apply: carry out a plan, one thread per machine. One machine's failure never stops the others;
each failure is reported as a MachineError naming the machine and the phase.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .driver import Driver, MachineRecord
from .model import MachineError
from .netns import NetnsDriver
from .plan import Action, Plan
from .ssh import SSHDriver
from .state import StateStore


class Drivers:
    """The drivers of one state directory, by name."""

    def __init__(self, store: StateStore, drivers: dict[str, Driver] | None = None) -> None:
        self._drivers: dict[str, Driver] = drivers if drivers is not None else {
            "netns": NetnsDriver(store.root),
            "ssh": SSHDriver(store.root),
        }

    def get(self, name: str) -> Driver:
        return self._drivers[name]


@dataclass(frozen=True)
class Outcome:
    action: Action
    error: MachineError | None = None

    def line(self) -> str:
        if self.error is not None:
            return f"error: {self.error}"
        done = {"create": "created", "change": "changed", "replace": "replaced", "remove": "removed"}
        return f"{self.action.symbol} {self.action.name}: {done[self.action.kind]}"


def run_action(action: Action, store: StateStore, drivers: Drivers) -> None:
    name = action.name
    if action.kind in ("remove", "replace"):
        try:
            old = store.load(name)
        except Exception:  # noqa: BLE001 - nothing recorded, nothing to remove
            old = None
        if old is not None:
            drivers.get(old.driver).remove(old)
            store.forget(name)
        if action.kind == "remove":
            return
    assert action.spec is not None
    spec = action.spec
    driver = drivers.get(spec.driver)
    if action.kind in ("create", "replace"):
        store.save(driver.create(spec))
        return
    record = store.load(name)
    if action.reconnect:  # the driver checks the new way in and records it; the engine is left alone
        record = driver.start(MachineRecord(spec, dict(record.details), record.created))
    if action.start:
        driver.stop(record)  # only a leftover pidfile, if anything
        record = driver.start(MachineRecord(spec, dict(record.details), record.created))
    elif action.restart:
        record = driver.reconfigure(record, spec)
    elif action.reload:
        record = driver.reload(record, spec)
    store.save(record)


def apply(plan: Plan, store: StateStore, drivers: Drivers | None = None, workers: int = 8,
          on_done: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    drivers = drivers or Drivers(store)
    if not plan.actions:
        return []

    def one(action: Action) -> Outcome:
        try:
            run_action(action, store, drivers)
            out = Outcome(action)
        except MachineError as e:
            out = Outcome(action, e)
        except Exception as e:  # noqa: BLE001 - reported against the machine, never fatal to the others
            out = Outcome(action, MachineError(action.name, "apply", str(e) or type(e).__name__))
        if on_done is not None:
            on_done(out)
        return out

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(plan.actions)))) as pool:
        return list(pool.map(one, plan.actions))
