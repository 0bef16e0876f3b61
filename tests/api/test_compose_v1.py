"""Issue 8's acceptance project against a real berthd, driven by `berth compose` and by
docker-compose v1 (Debian's 1.29, docker-py underneath, a real client of berthd's API): it comes
up in dependency order (the backend waits for the store to be healthy), its services reach each
other by name and alias, the store stays off the frontend network, the published port answers
from the host, a second `up -d` changes nothing, and `down -v` leaves nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from berth.compose.labels import COMPOSE_VERSION
from tests.conftest import Daemon, docker_cli

V1 = shutil.which("docker-compose") or "/usr/bin/docker-compose"

# The store writes into the named volume a second after it starts and is healthy once the file
# exists; the backend serves what it finds there when it starts, so its page says whether it
# waited for the store to be healthy. SIGKILL: httpd as PID 1 ignores SIGTERM, and down should not
# spend a grace period per service.
ACCEPTANCE = """
services:
  store:
    image: busybox
    command: sh -c 'echo store-starting; sleep 1; echo stored > /data/value; mkdir -p /www; cp /data/value /www/index.html; exec httpd -f -p 80 -h /www'
    stop_signal: SIGKILL
    volumes: [data:/data]
    healthcheck:
      test: [CMD, test, -f, /data/value]
      interval: 200ms
      retries: 20
    networks: [backend]
  backend:
    image: busybox
    command: sh -c 'mkdir -p /www; (cat /data/value || echo too-early) > /www/index.html; exec httpd -f -p 80 -h /www'
    stop_signal: SIGKILL
    volumes: [data:/data:ro]
    depends_on:
      store: {condition: service_healthy}
    networks:
      backend:
        aliases: [api]
  frontend:
    build: ./frontend
    stop_signal: SIGKILL
    ports: ["127.0.0.1::80"]
    networks: [frontend, backend]
    depends_on: [backend]
networks:
  frontend: {}
  backend: {}
volumes:
  data: {}
"""

FRONTEND_DOCKERFILE = """FROM busybox
RUN mkdir -p /www && echo frontend-page > /www/index.html
CMD ["httpd", "-f", "-p", "80", "-h", "/www"]
"""


def _v1(host: str, root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    # COMPOSE_DOCKER_CLI_BUILD=0: build through docker-py's POST /build, not by running the docker CLI.
    env = {**os.environ, "DOCKER_HOST": host, "COMPOSE_DOCKER_CLI_BUILD": "0", "COMPOSE_INTERACTIVE_NO_CLI": "1"}
    proc = subprocess.run([V1, "-p", root.name, *args], cwd=root, env=env, capture_output=True, text=True,
                          timeout=180)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker-compose {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def _project_objects(d: Daemon, name: str) -> tuple[list[str], list[str], list[str]]:
    label = json.dumps({"label": [f"com.docker.compose.project={name}"]})
    ctrs = d.json("GET", f"/containers/json?all=1&filters={urllib.request.quote(label)}")
    nets = d.json("GET", f"/networks?filters={urllib.request.quote(label)}")
    vols = d.json("GET", f"/volumes?filters={urllib.request.quote(label)}")
    assert isinstance(ctrs, list) and isinstance(nets, list) and isinstance(vols, dict)
    return ([c["Names"][0] for c in ctrs], [n["Name"] for n in nets],
            [v["Name"] for v in vols.get("Volumes") or []])


def _fetch(run: Callable[..., subprocess.CompletedProcess[str]], host: str, root: Path, *targets: str) -> list[str]:
    """The frontend's view of http://<target>/ for each target (one exec; a page that cannot be
    fetched is ""); httpd may need a moment after `up -d` returns."""
    script = "; ".join(f"echo \"$(wget -q -O- http://{t}/)\"" for t in targets)
    deadline = time.monotonic() + 10
    while True:
        got = run(host, root, "exec", "-T", "frontend", "sh", "-c", script, check=False)
        pages = got.stdout.splitlines()
        if (got.returncode == 0 and all(pages)) or time.monotonic() > deadline:
            return pages
        time.sleep(0.2)


def _berth(host: str, root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "berth.cli.main", "-H", host, "compose", "-p", root.name, *args],
                          cwd=root, capture_output=True, text=True, timeout=180)
    if check and proc.returncode != 0:
        raise AssertionError(f"berth compose {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


@dataclass
class Tool:
    run: Callable[..., subprocess.CompletedProcess[str]]
    container: str  # the name of a service's first container, from {p} and {s}
    started: str  # what `up -d` says of a container it started
    unchanged: str  # what a second `up -d` says of it
    version: str  # the com.docker.compose.version label


TOOLS = {
    "docker-compose-v1": Tool(_v1, "{p}_{s}_1", "Creating {c} ... done", "{c} is up-to-date", "1.29.2"),
    "berth-compose": Tool(_berth, "{p}-{s}-1", " Container {c}  Started", " Container {c}  Running", COMPOSE_VERSION),
}


@pytest.mark.parametrize("tool_name", list(TOOLS))
def test_acceptance_project(berthd: Daemon, tmp_path: Path, tool_name: str) -> None:
    tool = TOOLS[tool_name]
    if tool.run is _v1 and not os.path.exists(V1):
        pytest.skip("docker-compose v1 is not installed")
    root = tmp_path / f"cacc{os.getpid()}{tool_name[0]}"
    (root / "frontend").mkdir(parents=True)
    (root / "frontend" / "Dockerfile").write_text(FRONTEND_DOCKERFILE)
    (root / "docker-compose.yml").write_text(ACCEPTANCE)
    name = root.name

    def cname(svc: str) -> str:
        return tool.container.format(p=name, s=svc)

    try:
        up = tool.run(berthd.host, root, "up", "-d")
        assert tool.started.format(c=cname("frontend")) in up.stderr, up.stderr
        ids = {svc: berthd.json("GET", f"/containers/{cname(svc)}/json") for svc in ("store", "backend", "frontend")}
        for svc, info in ids.items():
            assert isinstance(info, dict) and info["State"]["Running"], (svc, info)
            labels = info["Config"]["Labels"]
            assert labels["com.docker.compose.service"] == svc
            assert labels["com.docker.compose.version"] == tool.version
        frontend = ids["frontend"]
        assert isinstance(frontend, dict)
        assert set(frontend["NetworkSettings"]["Networks"]) == {f"{name}_frontend", f"{name}_backend"}
        store = ids["store"]
        assert isinstance(store, dict) and store["State"]["Health"]["Status"] == "healthy"

        # By service name and by alias, over the backend network; the page proves the wait.
        by_name, by_alias = _fetch(tool.run, berthd.host, root, "backend", "api")
        assert (by_name, by_alias) == ("stored", "stored")

        port = tool.run(berthd.host, root, "port", "frontend", "80").stdout.strip()
        assert port.startswith("127.0.0.1:"), port
        with urllib.request.urlopen(f"http://{port}/", timeout=5) as resp:
            assert resp.read() == b"frontend-page\n"

        # A container on the frontend network alone can neither resolve nor reach the store.
        store_ip = ids["store"]["NetworkSettings"]["Networks"][f"{name}_backend"]["IPAddress"]  # type: ignore[index]
        docker = docker_cli()
        probe = subprocess.run(
            [docker, "-H", berthd.host, "run", "--rm", "--network", f"{name}_frontend", "busybox", "sh", "-c",
             f"nslookup store; timeout 1 wget -q -O- http://{store_ip}/ && echo REACHED"],
            capture_output=True, text=True, timeout=60) if docker else None
        if probe is not None:
            assert "NXDOMAIN" in probe.stdout + probe.stderr and "REACHED" not in probe.stdout, probe

        ps = tool.run(berthd.host, root, "ps").stdout
        for svc in ("store", "backend", "frontend"):
            assert cname(svc) in ps
        assert "store-starting" in tool.run(berthd.host, root, "logs", "--no-color", "store").stdout

        # Nothing changed: the tool reads its own labels and config hashes back and leaves all running.
        again = tool.run(berthd.host, root, "up", "-d")
        assert tool.unchanged.format(c=cname("store")) in again.stderr, again.stderr
        assert berthd.json("GET", f"/containers/{cname('store')}/json")["Id"] == ids["store"]["Id"]  # type: ignore[index]
    finally:
        down = tool.run(berthd.host, root, "down", "-v", "--rmi", "local", check=False)
    assert down.returncode == 0, down.stderr
    assert _project_objects(berthd, name) == ([], [], [])
