"""plan: what `apply` would do to bring the machines in line with machines.yml. Pure.

Compares each machine of the file with the spec recorded when it was last applied (and whether it
runs now): a new machine is created (`+`); a different driver or driver option (an address) means
replacing it (`-/+`), except for options that only say how it is reached (ssh user, port, key: `~`); other engine changes restart its berthd, containers kept (`~`); a change of
labels only reloads the engine's configuration (`~`, no restart); a stopped machine is started
(`~`); machines no longer in the file are removed only with prune (`-`). Nothing else is an action,
so a second apply does nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .model import MachineSpec

SYMBOLS = {"create": "+", "change": "~", "replace": "-/+", "remove": "-"}
# Driver options that only say how a machine is reached: changing them must never replace (wipe) it.
ACCESS_OPTIONS = {"ssh": ("port", "user", "identity_file")}


@dataclass(frozen=True)
class Action:
    kind: str  # create | change | replace | remove
    name: str
    spec: MachineSpec | None  # what the machine becomes (None for remove)
    reasons: tuple[str, ...] = ()
    restart: bool = False  # change: berthd restarts with new options
    reload: bool = False  # change: labels only, berthd re-reads its configuration
    start: bool = False  # change: the machine is not running
    reconnect: bool = False  # change: only how it is reached (ssh user, port, key): the engine is untouched

    @property
    def symbol(self) -> str:
        return SYMBOLS[self.kind]

    def line(self) -> str:
        driver = f" ({self.spec.driver})" if self.spec else ""
        why = f": {'; '.join(self.reasons)}" if self.reasons else ""
        return f"{self.symbol} {self.name}{driver}{why}"


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    unmanaged: tuple[str, ...] = ()  # recorded machines not in the file, kept without prune

    def __bool__(self) -> bool:
        return bool(self.actions)

    def lines(self) -> list[str]:
        out = [a.line() for a in self.actions]
        out += [f"  {n}: not in the file (apply --prune removes it)" for n in self.unmanaged]
        if not self.actions:
            out.append("No changes: the machines match the file.")
        else:
            counts = {k: sum(1 for a in self.actions if a.kind == k) for k in SYMBOLS}
            out.append(f"Plan: {counts['create']} to create, {counts['change']} to change, "
                       f"{counts['replace']} to replace, {counts['remove']} to remove.")
        return out


def _dict_diff(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        if a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def label_diff(old: Mapping[str, str], new: Mapping[str, str]) -> str:
    parts = [f"+{k}={v}" for k, v in new.items() if old.get(k) != v and k not in old]
    parts += [f"{k}={old[k]}->{v}" for k, v in new.items() if k in old and old[k] != v]
    parts += [f"-{k}={v}" for k, v in old.items() if k not in new]
    return "labels " + ", ".join(parts)


def plan(desired: Mapping[str, MachineSpec], recorded: Mapping[str, MachineSpec],
         running: Mapping[str, bool], prune: bool = False) -> Plan:
    actions: list[Action] = []
    for name, spec in desired.items():
        old = recorded.get(name)
        if old is None:
            actions.append(Action("create", name, spec, ("new machine",)))
            continue
        if old.driver != spec.driver:
            actions.append(Action("replace", name, spec, (f"driver: {old.driver} -> {spec.driver}",)))
            continue
        access = {k: v for k, v in old.driver_options.items() if k in ACCESS_OPTIONS.get(spec.driver, ())}
        new_access = {k: v for k, v in spec.driver_options.items() if k in ACCESS_OPTIONS.get(spec.driver, ())}
        if {k: v for k, v in old.driver_options.items() if k not in access} != \
                {k: v for k, v in spec.driver_options.items() if k not in new_access}:
            actions.append(Action("replace", name, spec, tuple(_dict_diff(old.driver_options, spec.driver_options))))
            continue
        if old.engine.data_root != spec.engine.data_root:
            actions.append(Action("replace", name, spec, (f"engine.data_root: {old.engine.data_root!r} -> "
                                                          f"{spec.engine.data_root!r}",)))
            continue
        reasons: list[str] = []
        reconnect = access != new_access
        if reconnect:
            reasons += _dict_diff(access, new_access)
            reasons.append("reconnect (the engine is untouched)")
        restart = old.engine.without_labels() != spec.engine.without_labels()
        if restart:
            reasons += _dict_diff(old.engine.without_labels(), spec.engine.without_labels(), "engine.")
            reasons.append("berthd restarts, containers keep running")
        relabel = old.engine.labels != spec.engine.labels
        if relabel:
            reasons.append(label_diff(old.engine.labels, spec.engine.labels) + ("" if restart else " (reload)"))
        start = not running.get(name, False)
        if start:
            reasons.append("start (not running)")
        if restart or relabel or start or reconnect:
            actions.append(Action("change", name, spec, tuple(reasons), restart=restart and not start,
                                  reload=relabel and not restart and not start, start=start,
                                  reconnect=reconnect and not start))
    gone = [n for n in recorded if n not in desired]
    if prune:
        actions += [Action("remove", n, None, ("not in the file",)) for n in gone]
        gone = []
    return Plan(tuple(actions), tuple(gone))
