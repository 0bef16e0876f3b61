"""The state directory, export/import, and `machine env`'s shell lines."""

from __future__ import annotations

import pytest

from berth.machine.commands import env_lines
from berth.machine.driver import MachineRecord
from berth.machine.model import EngineSpec, MachineSpec
from berth.machine.state import NoSuchMachine, StateStore


def record(name: str) -> MachineRecord:
    spec = MachineSpec(name, "netns", {"address": "10.250.0.11/24"}, EngineSpec({"type": "db"}))
    return MachineRecord(spec, {"netns": f"berth-{name}", "socket": f"/x/{name}/berth.sock"}, 1.0)


def test_save_load_forget(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = StateStore(str(tmp_path / "state"))
    assert store.names() == [] and store.all() == {}
    store.save(record("b"))
    store.save(record("a"))
    assert store.names() == ["a", "b"]
    assert store.load("a").to_dict() == record("a").to_dict()
    store.forget("a")
    store.forget("b")
    with pytest.raises(NoSuchMachine, match="no such machine: a"):
        store.load("a")
    assert not (tmp_path / "state").exists()


def test_export_import_between_state_dirs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    src, dst = StateStore(str(tmp_path / "one")), StateStore(str(tmp_path / "two"))
    src.save(record("a"))
    data = src.export()
    assert data["format"] == "berth.machines/1" and "identity" not in data["machines"][0]
    assert dst.import_(data) == ["a"]
    assert dst.load("a").to_dict() == record("a").to_dict()
    with pytest.raises(ValueError, match="exists already"):
        dst.import_(data)
    with pytest.raises(ValueError, match="not a berth machines export"):
        dst.import_({"format": "other"})


def test_env_lines_per_shell() -> None:
    values = {"DOCKER_HOST": "unix:///s/a/berth.sock", "BERTH_MACHINE_NAME": "a"}
    assert env_lines("sh", values, "berth machine env a")[:2] == [
        'export DOCKER_HOST="unix:///s/a/berth.sock"', 'export BERTH_MACHINE_NAME="a"']
    assert env_lines("fish", values, "c")[0] == 'set -gx DOCKER_HOST "unix:///s/a/berth.sock";'
    assert env_lines("sh", {"DOCKER_HOST": None}, "c")[0] == "unset DOCKER_HOST"
    assert env_lines("sh", values, "berth machine env a")[-1] == "# eval $(berth machine env a)"
