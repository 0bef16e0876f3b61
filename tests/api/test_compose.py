"""`berth compose` against a real berthd: up, ps, selective recreate, down -v, and the loader's errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from berth.client.api import APIClient
from tests.conftest import Daemon

COMPOSE = """
services:
  app:
    build:
      context: ./app
      args:
        GREETING: hello
    stop_grace_period: 1s
    environment:
      MODE: ${MODE:-one}
    volumes:
      - data:/data
    depends_on:
      web:
        condition: service_started
  web:
    image: busybox
    command: httpd -f -p 8080
    stop_grace_period: 1s
    labels:
      tier: front
  worker:
    image: busybox
    command: ["sleep", "1000"]
    stop_grace_period: 1s
    environment:
      LEVEL: "${LEVEL}"
volumes:
  data:
"""

DOCKERFILE = """FROM busybox
ARG GREETING
RUN echo "$GREETING" > /greeting
CMD ["sleep", "1000"]
"""


def _compose(host: str, project: Path, *args: str, env: dict[str, str] | None = None,
             check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "berth.cli.main", "-H", host, "compose", "-p", project.name,
           "--project-directory", str(project), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "LEVEL": "1", **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def project(tmp_path: Path, berthd: Daemon) -> Iterator[Path]:
    root = tmp_path / f"bcompose{os.getpid()}"
    (root / "app").mkdir(parents=True)
    (root / "compose.yaml").write_text(COMPOSE)
    (root / "app" / "Dockerfile").write_text(DOCKERFILE)
    yield root
    _compose(berthd.host, root, "down", "-v", "--rmi", "local", "--remove-orphans", check=False)


def _ids(api: APIClient, name: str) -> dict[str, str]:
    found = api.containers.list(all=True, filters={"label": [f"com.docker.compose.project={name}"]})
    return {c["Names"][0].lstrip("/"): c["Id"] for c in found}


def test_up_ps_recreate_down(berthd: Daemon, project: Path) -> None:
    api = APIClient(berthd.host)
    name = project.name
    _compose(berthd.host, project, "up", "-d")
    ids = _ids(api, name)
    assert set(ids) == {f"{name}-app-1", f"{name}-web-1", f"{name}-worker-1"}
    for cid in ids.values():
        info = api.containers.inspect(cid)
        assert info["State"]["Running"], info["State"]
        labels = info["Config"]["Labels"]
        assert labels["com.docker.compose.project"] == name
        assert labels["com.docker.compose.oneoff"] == "False"
        assert labels["com.docker.compose.container-number"] == "1"
        assert len(labels["com.docker.compose.config-hash"]) == 64
        assert labels["com.docker.compose.project.config_files"] == str(project / "compose.yaml")
    app = api.containers.inspect(ids[f"{name}-app-1"])
    assert "MODE=one" in app["Config"]["Env"]
    assert any(m.get("Name") == f"{name}_data" for m in app["Mounts"]), app["Mounts"]
    assert api.networks.inspect(f"{name}_default")["Labels"]["com.docker.compose.network"] == "default"
    assert api.volumes.inspect(f"{name}_data")["Labels"]["com.docker.compose.volume"] == "data"

    ps = _compose(berthd.host, project, "ps").stdout
    assert ps.splitlines()[0].split()[:4] == ["NAME", "IMAGE", "COMMAND", "SERVICE"]
    for svc in ("app", "web", "worker"):
        assert f"{name}-{svc}-1" in ps

    # Nothing changed: nothing is recreated.
    _compose(berthd.host, project, "up", "-d")
    assert _ids(api, name) == ids

    # One service's environment changed: only that one is recreated.
    _compose(berthd.host, project, "up", "-d", env={"LEVEL": "2"})
    after = _ids(api, name)
    assert after[f"{name}-worker-1"] != ids[f"{name}-worker-1"]
    assert {k: v for k, v in after.items() if "worker" not in k} == \
        {k: v for k, v in ids.items() if "worker" not in k}
    assert "LEVEL=2" in api.containers.inspect(after[f"{name}-worker-1"])["Config"]["Env"]

    # A dependency changed: it and its dependents are recreated, the rest is left alone.
    (project / "compose.yaml").write_text(COMPOSE.replace("httpd -f -p 8080", "httpd -f -p 8081"))
    _compose(berthd.host, project, "up", "-d", env={"LEVEL": "2"})
    again = _ids(api, name)
    assert again[f"{name}-web-1"] != after[f"{name}-web-1"]
    assert again[f"{name}-app-1"] != after[f"{name}-app-1"]
    assert again[f"{name}-worker-1"] == after[f"{name}-worker-1"]

    out = _compose(berthd.host, project, "exec", "-T", "app", "cat", "/greeting").stdout
    assert out.strip() == "hello"

    _compose(berthd.host, project, "down", "-v")
    assert _ids(api, name) == {}
    assert not api.networks.list(filters={"label": [f"com.docker.compose.project={name}"]})
    assert not (api.volumes.list(filters={"label": [f"com.docker.compose.project={name}"]}).get("Volumes") or [])


def test_schema_error_names_the_place(berthd: Daemon, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    image: busybox\n    restart: 5\n")
    proc = _compose(berthd.host, tmp_path, "up", "-d", check=False)
    assert proc.returncode != 0
    assert f"{tmp_path / 'compose.yaml'}: services.web.restart: must be a string" in proc.stderr


def test_required_variable_names_the_place(berthd: Daemon, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    image: 'busybox:${TAG:?set TAG}'\n")
    proc = _compose(berthd.host, tmp_path, "config", check=False)
    assert proc.returncode != 0
    assert "compose.yaml: services.web.image: required variable TAG is missing a value: set TAG" in proc.stderr


LIFECYCLE = """
name: ignored-because-of-p
services:
  init:
    image: busybox
    command: sh -c 'echo seeded > /data/seed; echo init-ran'
    volumes: [data:/data]
  store:
    image: busybox
    command: sh -c 'echo store-up; exec sleep 1000'
    stop_grace_period: 1s
    ports: ["127.0.0.1::80"]
    secrets: [token]
    healthcheck:
      test: ["CMD", "test", "-f", "/data/seed"]
      interval: 1s
    volumes: [data:/data]
    networks:
      back:
        aliases: [db]
    depends_on:
      init: {condition: service_completed_successfully}
  web:
    image: busybox
    command: ["sleep", "1000"]
    stop_grace_period: 1s
    networks: [front, back]
    depends_on:
      store: {condition: service_healthy}
networks:
  front: {}
  back:
    ipam:
      config: [{subnet: 10.231.7.0/24}]
volumes:
  data: {}
secrets:
  token:
    file: ./token.txt
"""


def test_lifecycle_commands(berthd: Daemon, tmp_path: Path) -> None:
    root = tmp_path / f"bclife{os.getpid()}"
    root.mkdir()
    (root / "compose.yaml").write_text(LIFECYCLE)
    (root / "token.txt").write_text("t0ken\n")
    api = APIClient(berthd.host)
    name = root.name
    try:
        up = _compose(berthd.host, root, "up", "--wait", "--scale", "web=2")
        assert f"Container {name}-web-2  Running" in up.stderr and f"Container {name}-store-1  Healthy" in up.stderr
        ids = _ids(api, name)
        assert api.containers.inspect(ids[f"{name}-store-1"])["State"]["Health"]["Status"] == "healthy"
        assert set(ids) == {f"{name}-init-1", f"{name}-store-1", f"{name}-web-1", f"{name}-web-2"}
        init = api.containers.inspect(ids[f"{name}-init-1"])
        assert init["State"]["ExitCode"] == 0 and not init["State"]["Running"]
        store = api.containers.inspect(ids[f"{name}-store-1"])
        back = store["NetworkSettings"]["Networks"][f"{name}_back"]
        assert back["IPAddress"].startswith("10.231.7.")
        assert "db" in (back.get("Aliases") or []) and "store" in (back.get("Aliases") or [])
        web = api.containers.inspect(ids[f"{name}-web-2"])
        assert set(web["NetworkSettings"]["Networks"]) == {f"{name}_front", f"{name}_back"}

        logs = _compose(berthd.host, root, "logs", "--no-color").stdout
        assert re.search(rf"^{name}-init-1 +\| init-ran$", logs, re.M), logs
        assert re.search(rf"^{name}-store-1 +\| store-up$", logs, re.M), logs

        assert _compose(berthd.host, root, "ps", "--services").stdout.split() == ["store", "web"]
        published = _compose(berthd.host, root, "port", "store", "80").stdout.strip()
        assert re.fullmatch(r"127\.0\.0\.1:\d+", published), published
        assert "sleep 1000" in _compose(berthd.host, root, "top", "store").stdout
        assert _compose(berthd.host, root, "config", "--services").stdout.split() == ["init", "store", "web"]
        assert len(_compose(berthd.host, root, "ps", "-a", "-q").stdout.split()) == 4

        run = _compose(berthd.host, root, "run", "--rm", "--no-deps", "store", "cat", "/data/seed")
        assert run.stdout.strip() == "seeded"
        assert set(_ids(api, name)) == set(ids)
        assert _compose(berthd.host, root, "exec", "store", "cat", "/run/secrets/token").stdout == "t0ken\n"

        _compose(berthd.host, root, "stop", "web")
        assert not api.containers.inspect(ids[f"{name}-web-1"])["State"]["Running"]
        _compose(berthd.host, root, "start", "web")
        assert api.containers.inspect(ids[f"{name}-web-1"])["State"]["Running"]
        _compose(berthd.host, root, "pause", "store")
        assert api.containers.inspect(ids[f"{name}-store-1"])["State"]["Paused"]
        _compose(berthd.host, root, "unpause", "store")
        assert not api.containers.inspect(ids[f"{name}-store-1"])["State"]["Paused"]

        # Scaling down removes the highest numbers; the rest stays as it was.
        _compose(berthd.host, root, "up", "-d", "--scale", "web=1")
        after = _ids(api, name)
        assert f"{name}-web-2" not in after and after[f"{name}-web-1"] == ids[f"{name}-web-1"]

        ls = _compose(berthd.host, root, "ls", "-a").stdout
        assert name in ls
    finally:
        _compose(berthd.host, root, "down", "-v", "--remove-orphans", check=False)
    assert _ids(api, name) == {}
    assert not api.networks.list(filters={"label": [f"com.docker.compose.project={name}"]})
    assert not (api.volumes.list(filters={"label": [f"com.docker.compose.project={name}"]}).get("Volumes") or [])


def test_up_attached_exit_code_from(berthd: Daemon, tmp_path: Path) -> None:
    root = tmp_path / f"bcjob{os.getpid()}"
    root.mkdir()
    (root / "compose.yaml").write_text(
        "services:\n"
        "  job: {image: busybox, command: \"sh -c 'sleep 1; echo working; exit 3'\"}\n"
        "  idle: {image: busybox, command: [sleep, '1000'], stop_grace_period: 1s}\n")
    api = APIClient(berthd.host)
    try:
        proc = _compose(berthd.host, root, "up", "--exit-code-from", "job", check=False)
        assert proc.returncode == 3, proc.stderr
        assert re.search(r"job-1 +\| working", proc.stdout), proc.stdout
        idle = api.containers.inspect(f"{root.name}-idle-1")
        assert not idle["State"]["Running"]
    finally:
        _compose(berthd.host, root, "down", check=False)
    assert _ids(api, root.name) == {}


NAMES = """
services:
  store:
    image: busybox
    command: sh -c 'mkdir -p /www && echo store-page > /www/index.html && exec httpd -f -p 80 -h /www'
    stop_grace_period: 1s
    networks:
      back:
        aliases: [db]
  web:
    image: busybox
    command: [sleep, "1000"]
    stop_grace_period: 1s
    networks: [front, back]
    depends_on: [store]
  lone:
    image: busybox
    command: [sleep, "1000"]
    stop_grace_period: 1s
    networks: [front]
networks:
  front: {}
  back: {}
"""


def test_services_resolve_by_name_and_alias_per_network(berthd: Daemon, tmp_path: Path) -> None:
    root = tmp_path / f"bcnames{os.getpid()}"
    root.mkdir()
    (root / "compose.yaml").write_text(NAMES)
    try:
        _compose(berthd.host, root, "up", "-d")
        for target in ("store", "db"):
            # `up -d` returns once containers are started, not once httpd listens: allow a moment.
            deadline = time.monotonic() + 10
            while True:
                got = _compose(berthd.host, root, "exec", "web", "wget", "-q", "-O-", f"http://{target}/",
                               check=False)
                if got.stdout == "store-page\n" or time.monotonic() > deadline:
                    break
                time.sleep(0.3)
            assert got.stdout == "store-page\n", (target, got.returncode, got.stderr)
        # `lone` shares no network with `store`: the name does not resolve there.
        miss = _compose(berthd.host, root, "exec", "lone", "nslookup", "store", check=False)
        assert miss.returncode != 0 and "NXDOMAIN" in miss.stdout + miss.stderr
    finally:
        _compose(berthd.host, root, "down", check=False)


def test_docker_compose_through_the_docker_cli_plugin(berthd: Daemon, tmp_path: Path) -> None:
    from tests.conftest import docker_cli

    docker = docker_cli()
    if docker is None:
        pytest.skip("no docker CLI on this host")
    plugins = tmp_path / "dockercfg" / "cli-plugins"
    plugins.mkdir(parents=True)
    plugin = plugins / "docker-compose"
    plugin.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'from berth.compose.cli import main; main()' \"$@\"\n")
    plugin.chmod(0o755)
    root = tmp_path / f"bcplugin{os.getpid()}"
    root.mkdir()
    (root / "compose.yaml").write_text("services:\n  web: {image: busybox, command: [sleep, '1000'], "
                                       "stop_grace_period: 1s}\n")
    env = {**os.environ, "DOCKER_CONFIG": str(tmp_path / "dockercfg"), "DOCKER_HOST": berthd.host}

    def docker_compose(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([docker, "compose", *args], cwd=root, env=env, capture_output=True, text=True,
                              timeout=120, check=True)

    try:
        assert "Docker Compose (berth)" in subprocess.run([docker, "--help"], env=env, capture_output=True,
                                                          text=True).stdout
        docker_compose("up", "-d")
        assert f"{root.name}-web-1" in docker_compose("ps").stdout
    finally:
        subprocess.run([docker, "compose", "down"], cwd=root, env=env, capture_output=True, timeout=120)
    assert _ids(APIClient(berthd.host), root.name) == {}
