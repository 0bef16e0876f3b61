"""Config hashes, dependency order and the container-create bodies: pure, no daemon."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from berth.compose import convert
from berth.compose.errors import ComposeError
from berth.compose.graph import order, run_in_order, with_dependencies
from berth.compose.loader import LoadOptions, load_project
from berth.compose.model import Project, Resource, Service


def _svc(name: str, **config: object) -> Service:
    return Service(name, {"image": "busybox", "networks": {"default": None}, **config})


def _project(*services: Service) -> Project:
    return Project("demo", Path("/p"), ["/p/compose.yaml"], {s.name: s for s in services},
                   {"default": Resource("default", "demo_default", False, {})},
                   {"data": Resource("data", "demo_data", False, {})})


def test_hash_changes_with_config_and_image_not_with_scale() -> None:
    base = _svc("web", environment={"A": "1"})
    h = convert.config_hash(base, "sha256:1")
    assert h == convert.config_hash(_svc("web", environment={"A": "1"}), "sha256:1")
    assert h != convert.config_hash(_svc("web", environment={"A": "2"}), "sha256:1")
    assert h != convert.config_hash(base, "sha256:2")
    assert h == convert.config_hash(_svc("web", environment={"A": "1"}, deploy={"replicas": 3}), "sha256:1")
    assert h == convert.config_hash(_svc("web", environment={"A": "1"}, scale=2), "sha256:1")
    assert h != convert.config_hash(_svc("web", environment={"A": "1"},
                                         deploy={"resources": {"limits": {"memory": "1g"}}}), "sha256:1")


def test_order_puts_dependencies_first() -> None:
    services = {
        "web": _svc("web", depends_on={"api": {"condition": "service_started"}}),
        "api": _svc("api", depends_on={"db": {}, "cache": {}}),
        "db": _svc("db"),
        "cache": _svc("cache"),
        "side": _svc("side", network_mode="service:db"),
    }
    names = order(services)
    for before, after in [("db", "api"), ("cache", "api"), ("api", "web"), ("db", "side")]:
        assert names.index(before) < names.index(after)
    assert with_dependencies(services, ["web"]) == {"web", "api", "db", "cache"}


def test_cycle_is_named() -> None:
    services = {"a": _svc("a", depends_on={"b": {}}), "b": _svc("b", depends_on={"a": {}})}
    with pytest.raises(ComposeError, match="dependency cycle: a -> b -> a"):
        order(services)


def test_run_in_order_is_parallel_where_the_graph_allows() -> None:
    services = {"a": _svc("a"), "b": _svc("b"), "c": _svc("c", depends_on={"a": {}, "b": {}})}
    running: set[str] = set()
    overlap: list[set[str]] = []
    lock = threading.Lock()

    def work(name: str, deps: dict[str, str]) -> str:
        with lock:
            running.add(name)
            overlap.append(set(running))
        time.sleep(0.05)
        with lock:
            running.discard(name)
        return name + "".join(sorted(deps.values()))

    result = run_in_order(services, work)
    assert result["c"] == "cab"
    assert any({"a", "b"} <= s for s in overlap)
    assert not any("c" in s and len(s) > 1 for s in overlap)


def test_reverse_order_stops_dependents_first() -> None:
    services = {"db": _svc("db"), "web": _svc("web", depends_on={"db": {}})}
    seen: list[str] = []
    run_in_order(services, lambda name, _: seen.append(name), reverse=True)
    assert seen == ["web", "db"]


def test_create_body_and_labels() -> None:
    svc = _svc(
        "web", command=["httpd", "-f"], environment={"A": "1", "UNSET": None}, user="1000",
        ports=[{"target": 80, "published": "8080", "protocol": "tcp", "host_ip": "127.0.0.1"}],
        expose=["9000"], volumes=[{"type": "volume", "source": "data", "target": "/data"},
                                  {"type": "bind", "source": "/srv", "target": "/srv", "read_only": True},
                                  {"type": "tmpfs", "target": "/run", "tmpfs": {"size": "64m"}}],
        restart="on-failure:3", cap_add=["NET_ADMIN"], privileged="false", read_only=True, init=True,
        ulimits={"nofile": {"soft": 10, "hard": 20}}, sysctls={"net.core.somaxconn": "1024"},
        extra_hosts={"host": "10.0.0.1"}, dns=["1.1.1.1"], stop_signal="SIGINT", stop_grace_period="1m30s",
        deploy={"resources": {"limits": {"cpus": "0.5", "memory": "256m", "pids": 100}}},
        labels={"tier": "front"}, hostname="h", working_dir="/w", tmpfs=["/tmp:size=1m"])
    project = _project(svc)
    body = convert.create_body(project, svc, 2, "h" * 64, "demo_default")
    assert body["Image"] == svc.image_name("demo")
    assert body["Env"] == ["A=1"]
    assert body["Cmd"] == ["httpd", "-f"]
    assert body["ExposedPorts"] == {"80/tcp": {}, "9000/tcp": {}}
    assert body["StopTimeout"] == 90
    host = body["HostConfig"]
    assert host["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}
    assert host["Mounts"][0] == {"Type": "volume", "Target": "/data", "ReadOnly": False, "Source": "demo_data",
                                 "VolumeOptions": {"NoCopy": False}}
    assert host["Mounts"][1]["ReadOnly"] is True
    assert host["Mounts"][2]["TmpfsOptions"] == {"SizeBytes": 64 << 20}
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert host["Privileged"] is False and host["ReadonlyRootfs"] is True and host["Init"] is True
    assert host["NanoCpus"] == 500_000_000 and host["Memory"] == 256 << 20 and host["PidsLimit"] == 100
    assert host["Ulimits"] == [{"Name": "nofile", "Soft": 10, "Hard": 20}]
    assert host["ExtraHosts"] == ["host:10.0.0.1"]
    assert host["Tmpfs"] == {"/tmp": "size=1m"}
    labels = body["Labels"]
    assert labels["tier"] == "front"
    assert labels[convert.LABEL_PROJECT] == "demo"
    assert labels[convert.LABEL_SERVICE] == "web"
    assert labels[convert.LABEL_NUMBER] == "2"
    assert labels[convert.LABEL_ONEOFF] == "False"
    assert labels[convert.LABEL_HASH] == "h" * 64
    assert labels[convert.LABEL_WORKDIR] == "/p"
    assert labels[convert.LABEL_FILES] == "/p/compose.yaml"
    assert convert.container_name(project, svc, 2) == "demo-web-2"


def test_healthcheck_and_logging() -> None:
    svc = _svc("db", healthcheck={"test": "pg_isready", "interval": "5s", "retries": 3, "start_period": "1m"},
               logging={"driver": "json-file", "options": {"max-size": "1m"}}, shm_size="64m")
    body = convert.create_body(_project(svc), svc, 1, "h", None)
    assert body["Healthcheck"] == {"Test": ["CMD-SHELL", "pg_isready"], "Interval": 5_000_000_000,
                                   "Retries": 3, "StartPeriod": 60_000_000_000}
    assert body["HostConfig"]["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "1m"}}
    assert body["HostConfig"]["ShmSize"] == 64 << 20
    assert convert.healthcheck({"disable": True}) == {"Test": ["NONE"]}


def test_endpoint_config_aliases_and_address() -> None:
    svc = _svc("api", networks={"back": {"aliases": ["backend"], "ipv4_address": "10.5.0.9"}})
    assert convert.endpoint_config(svc, "back", "demo-api-1") == {
        "Aliases": ["api", "backend"], "IPAMConfig": {"IPv4Address": "10.5.0.9"}}


def test_scale_from_deploy_replicas(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("services:\n  w: {image: a, deploy: {replicas: 3}}\n  v: {image: a}\n")
    p = load_project(LoadOptions(cwd=tmp_path, environ={}))
    assert p.services["w"].scale == 3 and p.services["v"].scale == 1
    assert p.services["v"].image_name(p.name) == "a"
    assert Service("x", {"build": {}}).image_name("demo") == "demo-x"


@pytest.mark.parametrize(("text", "seconds"), [("10s", 10), ("1m30s", 90), ("500ms", 0.5), (3, 3), ("1h", 3600)])
def test_durations(text: object, seconds: float) -> None:
    assert convert.parse_duration(text) == seconds
