"""machines.yml loading: interpolation, .env, defaults merge, and schema errors that name file and path."""

from __future__ import annotations

import pytest

from berth.machine import config
from berth.machine.model import MachineConfigError

DOC = """\
defaults:
  driver: netns
  engine:
    labels: {zone: "${ZONE:-eu}"}
    insecure_registries: [10.250.0.1:5000]
    options: {log-level: info}
machines:
  web-1:
    address: 10.250.0.11/24
    engine:
      labels: [type=frontend]
      insecure_registries: [10.250.0.2:5000, 10.250.0.1:5000]
  db-1:
    address: ${DB_ADDRESS}
    engine:
      labels: {type: db, zone: us}
      options: {log-level: debug}
  far:
    driver: ssh
    host: far.example
    port: ${SSH_PORT}
    user: root
"""


def parse(text: str, env: dict[str, str] | None = None) -> dict:
    return config.parse(text, "machines.yml", env or {})


def test_defaults_merge_and_interpolation() -> None:
    specs = parse(DOC, {"DB_ADDRESS": "10.250.0.13/24", "SSH_PORT": "2222"})
    assert list(specs) == ["web-1", "db-1", "far"]
    web, db, far = specs["web-1"], specs["db-1"], specs["far"]
    assert web.driver == "netns" and web.driver_options == {"address": "10.250.0.11/24"}
    assert web.engine.labels == {"zone": "eu", "type": "frontend"}
    assert web.engine.insecure_registries == ("10.250.0.1:5000", "10.250.0.2:5000")
    assert web.engine.options == {"log-level": "info"}
    assert db.engine.labels == {"zone": "us", "type": "db"}
    assert db.engine.options == {"log-level": "debug"}
    assert db.driver_options == {"address": "10.250.0.13/24"}
    assert far.driver == "ssh" and far.driver_options == {"host": "far.example", "port": 2222, "user": "root"}
    assert far.engine.label_list() == ["zone=eu"]


@pytest.mark.parametrize("value, env, want", [
    ("$A", {"A": "x"}, "x"),
    ("${A}-${B}", {"A": "x", "B": "y"}, "x-y"),
    ("${A:-d}", {}, "d"),
    ("${A:-d}", {"A": ""}, "d"),
    ("${A-d}", {"A": ""}, ""),
    ("$$A", {"A": "x"}, "$A"),
    ("${UNSET}", {}, ""),
    ("plain", {}, "plain"),
    ("${A:-${B}}", {"B": "b"}, "b"),
    ("${A:-${B:-${C}}}", {"C": "c"}, "c"),
    ("${A:-x${B}y}", {"A": "", "B": "-"}, "x-y"),
    ("${A:-${B}}", {"A": "a", "B": "b"}, "a"),
])
def test_interpolate_string(value: str, env: dict[str, str], want: str) -> None:
    assert config.interpolate_string(value, env) == want


def test_required_variable_names_file_and_path() -> None:
    doc = "machines:\n  w:\n    driver: netns\n    address: ${ADDR:?the address of w}\n"
    with pytest.raises(MachineConfigError) as e:
        parse(doc)
    assert str(e.value) == "machines.yml:4: machines.w.address: required variable ADDR is missing a value: the address of w"


def test_dotenv_beside_the_file_and_environment_wins(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "machines.yml").write_text(
        "machines:\n  w:\n    driver: netns\n    address: ${ADDR}\n    engine:\n      labels: ['a=${A}']\n")
    (tmp_path / ".env").write_text("ADDR=10.250.0.5/24\nA=from-dotenv\n")
    specs = config.load(str(tmp_path / "machines.yml"), {"A": "from-env"})
    assert specs["w"].driver_options["address"] == "10.250.0.5/24"
    assert specs["w"].engine.labels == {"a": "from-env"}


def test_missing_file_is_named(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(MachineConfigError, match="nope.yml: No such file"):
        config.load(str(tmp_path / "nope.yml"), {})


@pytest.mark.parametrize("doc, message", [
    ("machines:\n  w:\n    driver: netns\n    address: 10.0.0.2/24\n    engine:\n      labels: [5]\n",
     "machines.yml:6: machines.w.engine.labels[0]: 5 is not of type 'string'"),
    ("machines:\n  w:\n    driver: netns\n", "machines.yml:2: machines.w: 'address' is required"),
    ("machines:\n  w:\n    driver: vbox\n", "machines.yml:3: machines.w.driver: 'vbox' is not one of ['netns', 'ssh']"),
    ("machines:\n  w:\n    driver: netns\n    address: 10.0.0.2/24\n    host: x\n",
     "machines.yml:2: machines.w: host: not an option of driver 'netns'"),
    ("machines:\n  w:\n    driver: netns\n    address: 10.0.0.2\n",
     "machines.yml:4: machines.w.address: '10.0.0.2' does not match"),
    ("machines:\n  w:\n    driver: ssh\n    host: h\n    port: 99999\n",
     "machines.yml:5: machines.w.port: 99999 is greater than the maximum of 65535"),
    ("machines:\n  w:\n    driver: netns\n    address: 10.0.0.2/24\n    engine:\n      colour: red\n",
     "machines.yml:6: machines.w.engine.colour: unknown key"),
    ("defaults:\n  engine:\n    data_root: relative\nmachines: {}\n",
     "machines.yml:3: defaults.engine.data_root: 'relative' does not match"),
    ("nodes: {}\n", "'machines' is required"),
    ("machines:\n  bad/name:\n    driver: netns\n", "machines.yml"),
    ("machines:\n  a:\n    driver: netns\n    address: 10.0.0.2/24\n  b:\n    driver: netns\n    address: 10.0.0.2/24\n",
     "machines.yml:7: machines.b.address: 10.0.0.2 is already the address of machine a"),
    ("machines:\n  a:\n    driver: netns\n    address: 10.0.0.0/24\n",
     "machines.yml:4: machines.a.address: 10.0.0.0/24 is not a host address"),
    ("machines: [\n", "machines.yml:2: invalid YAML"),
    ("", "machines.yml: the file is empty"),
])
def test_schema_errors_name_file_and_path(doc: str, message: str) -> None:
    with pytest.raises(MachineConfigError) as e:
        parse(doc)
    assert message in str(e.value)


def test_the_schema_ships_with_the_package() -> None:
    s = config.schema()
    assert s["required"] == ["machines"] and "machine" in s["$defs"]


def test_merge_machine_keys_replace_engine_merges() -> None:
    merged = config.merge_machine(
        {"driver": "netns", "engine": {"labels": ["a=1", "b=2"], "data_root": "/d"}},
        {"address": "10.0.0.2/24", "engine": {"labels": {"b": "3"}}})
    assert merged == {"driver": "netns", "address": "10.0.0.2/24",
                      "engine": {"labels": {"a": "1", "b": "3"}, "data_root": "/d"}}
