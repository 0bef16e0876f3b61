"""Merge rules for several `-f` files and `extends`, on canonical services."""

from __future__ import annotations

from pathlib import Path

from berth.compose.merge import merge_documents, strip_tags
from berth.compose.normalize import canonical_service, parse_port, parse_volume
from berth.compose.yamlfile import parse_yaml

BASE = Path("/proj")


def _svc(yaml_text: str) -> dict:
    return canonical_service(parse_yaml(yaml_text, "t"), BASE)


def _merge(a: str, b: str) -> dict:
    return strip_tags(merge_documents(_svc(a), _svc(b)))


def test_mappings_merge_and_override_wins() -> None:
    out = _merge("environment: [A=1, B=2]\nlabels: {x: a}", "environment: {B: 3, C: 4}\nlabels: [y=b]")
    assert out["environment"] == {"A": "1", "B": "3", "C": "4"}
    assert out["labels"] == {"x": "a", "y": "b"}


def test_scalars_replace() -> None:
    assert _merge("image: a\nuser: root", "image: b")["image"] == "b"


def test_command_and_entrypoint_replace() -> None:
    out = _merge("command: [a, b]\nentrypoint: [x]\nhealthcheck: {test: [CMD, a]}",
                 "command: [c]\nentrypoint: [y, z]\nhealthcheck: {test: [CMD, b]}")
    assert out["command"] == ["c"]
    assert out["entrypoint"] == ["y", "z"]
    assert out["healthcheck"]["test"] == ["CMD", "b"]


def test_sequences_append_without_duplicates() -> None:
    out = _merge("cap_add: [NET_ADMIN]\ndns: 1.1.1.1", "cap_add: [NET_ADMIN, SYS_TIME]\ndns: [8.8.8.8]")
    assert out["cap_add"] == ["NET_ADMIN", "SYS_TIME"]
    assert out["dns"] == ["1.1.1.1", "8.8.8.8"]


def test_ports_merge_by_identity_volumes_by_target() -> None:
    out = _merge("ports: ['80:80', '443:443']\nvolumes: [data:/data, ./a:/a]",
                 "ports: ['80:80', '8080:8080']\nvolumes: [other:/data]")
    assert [p["target"] for p in out["ports"]] == [80, 443, 8080]
    assert {v["target"]: v.get("source") for v in out["volumes"]} == {"/data": "other", "/a": "/proj/a"}


def test_depends_on_and_networks_merge_as_mappings() -> None:
    out = _merge("depends_on: [db]\nnetworks: {front: {aliases: [w]}}",
                 "depends_on: {cache: {condition: service_healthy}}\nnetworks: [front, back]")
    assert out["depends_on"] == {"db": {"condition": "service_started", "required": True},
                                 "cache": {"condition": "service_healthy", "required": True}}
    assert out["networks"] == {"front": {"aliases": ["w"]}, "back": None}


def test_reset_and_override_tags() -> None:
    out = _merge("ports: ['80:80']\nenvironment: {A: 1, B: 2}\nuser: x",
                 "ports: !reset []\nenvironment: !override {C: 3}\nuser: !reset null")
    assert "ports" not in out and "user" not in out
    assert out["environment"] == {"C": "3"}


def test_build_context_resolved_and_args_merged() -> None:
    out = _merge("build: ./app", "build: {args: [X=1]}")
    assert out["build"] == {"context": "/proj/app", "args": {"X": "1"}}


def test_yaml_12_keeps_sexagesimal_and_yes_as_strings() -> None:
    doc = parse_yaml("ports: [22:22]\nflag: yes\noctal: 0755", "t")
    assert doc == {"ports": ["22:22"], "flag": "yes", "octal": 755}


def test_anchors_and_merge_keys() -> None:
    doc = parse_yaml("x-base: &b {image: busybox, user: x}\nservices:\n  a: {<<: *b, user: y}\n", "t")
    assert doc["services"]["a"] == {"image": "busybox", "user": "y"}


def test_port_short_syntax() -> None:
    assert parse_port("127.0.0.1:8080:80/udp") == [
        {"mode": "ingress", "target": 80, "protocol": "udp", "published": "8080", "host_ip": "127.0.0.1"}]
    assert [p["target"] for p in parse_port("3000-3002")] == [3000, 3001, 3002]
    assert [p["published"] for p in parse_port("9000-9001:3000-3001")] == ["9000", "9001"]
    assert parse_port(80) == [{"mode": "ingress", "target": 80, "protocol": "tcp"}]


def test_volume_short_syntax() -> None:
    assert parse_volume("/data", BASE) == {"type": "volume", "target": "/data"}
    assert parse_volume("db:/var/lib:ro", BASE) == {"type": "volume", "source": "db", "target": "/var/lib",
                                                    "volume": {}, "read_only": True}
    assert parse_volume("./conf:/etc/conf", BASE)["source"] == "/proj/conf"
