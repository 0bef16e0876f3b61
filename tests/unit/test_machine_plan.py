"""plan diffing: +, ~ (reload or restart or start), -/+, - with prune; nothing when in line."""

from __future__ import annotations

from dataclasses import replace

from berth.machine.model import EngineSpec, MachineSpec
from berth.machine.plan import plan


def spec(name: str, address: str = "10.250.0.11/24", labels: dict[str, str] | None = None,
         **engine: object) -> MachineSpec:
    return MachineSpec(name, "netns", {"address": address},
                       EngineSpec(labels=labels or {"type": "frontend"}, **engine))  # type: ignore[arg-type]


def test_nothing_to_do_when_recorded_equals_desired_and_running() -> None:
    desired = {"a": spec("a"), "b": spec("b", "10.250.0.12/24")}
    p = plan(desired, dict(desired), {"a": True, "b": True})
    assert not p and p.actions == ()
    assert p.lines() == ["No changes: the machines match the file."]


def test_new_machine_is_created() -> None:
    p = plan({"a": spec("a")}, {}, {})
    assert [(a.symbol, a.name) for a in p.actions] == [("+", "a")]
    assert p.lines()[0] == "+ a (netns): new machine"


def test_label_change_only_reloads() -> None:
    old = spec("a", labels={"type": "frontend", "zone": "eu"})
    new = spec("a", labels={"type": "db", "zone": "eu", "tier": "1"})
    (action,) = plan({"a": new}, {"a": old}, {"a": True}).actions
    assert action.symbol == "~" and action.reload and not action.restart and not action.start
    assert action.reasons == ("labels +tier=1, type=frontend->db (reload)",)


def test_engine_option_change_restarts() -> None:
    old = spec("a")
    new = spec("a", insecure_registries=("10.250.0.1:5000",), labels={"type": "db"})
    (action,) = plan({"a": new}, {"a": old}, {"a": True}).actions
    assert action.kind == "change" and action.restart and not action.reload
    assert any("insecure_registries" in r for r in action.reasons)


def test_stopped_machine_is_started() -> None:
    (action,) = plan({"a": spec("a")}, {"a": spec("a")}, {"a": False}).actions
    assert action.kind == "change" and action.start and action.reasons == ("start (not running)",)


def test_address_or_driver_change_replaces() -> None:
    old = spec("a")
    (action,) = plan({"a": spec("a", "10.250.0.99/24")}, {"a": old}, {"a": True}).actions
    assert action.symbol == "-/+" and action.reasons == ("address: '10.250.0.11/24' -> '10.250.0.99/24'",)
    ssh = MachineSpec("a", "ssh", {"host": "h"})
    (action,) = plan({"a": ssh}, {"a": old}, {"a": True}).actions
    assert action.symbol == "-/+" and action.reasons == ("driver: netns -> ssh",)
    moved = replace(old, engine=replace(old.engine, data_root="/srv/a"))
    (action,) = plan({"a": moved}, {"a": old}, {"a": True}).actions
    assert action.kind == "replace"


def test_machines_gone_from_the_file_need_prune() -> None:
    recorded = {"a": spec("a"), "old": spec("old", "10.250.0.20/24")}
    p = plan({"a": spec("a")}, recorded, {"a": True, "old": True})
    assert p.actions == () and p.unmanaged == ("old",)
    assert "  old: not in the file (apply --prune removes it)" in p.lines()
    p = plan({"a": spec("a")}, recorded, {"a": True, "old": True}, prune=True)
    assert [(a.symbol, a.name) for a in p.actions] == [("-", "old")]
    assert p.lines()[-1] == "Plan: 0 to create, 0 to change, 0 to replace, 1 to remove."


def test_spec_round_trips_through_its_record() -> None:
    s = spec("a", labels={"x": "1"}, insecure_registries=("r:5000",), options={"log-level": "debug"})
    assert MachineSpec.from_dict(s.to_dict()) == s


def test_ssh_access_change_reconnects_and_host_change_replaces() -> None:
    def ssh(**opts: object) -> MachineSpec:
        return MachineSpec("far", "ssh", {"host": "h1", "user": "root", "identity_file": "/k1", **opts})

    (action,) = plan({"far": ssh(identity_file="/k2", port=2222)}, {"far": ssh()}, {"far": True}).actions
    assert action.kind == "change" and action.reconnect and not (action.restart or action.reload or action.start)
    assert action.reasons == ("identity_file: '/k1' -> '/k2'", "port: None -> 2222",
                              "reconnect (the engine is untouched)")
    (action,) = plan({"far": ssh(host="h2")}, {"far": ssh()}, {"far": True}).actions
    assert action.kind == "replace"
