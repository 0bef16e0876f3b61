"""Networks and compose through the cluster manager, on the cluster of cluster_lab.py (its engines
share the etcd for overlay networks): `network create/ls/inspect/rm/connect/disconnect/prune` with
the docker CLI, then one project from a registry image brought up by `berth compose` and by
docker-compose v1: placement constraints honoured, `--scale` spread, services reaching each other
by name across nodes over the project's overlay network."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import _UnixConnection
from .cluster_lab import DOCKER, NODES, Cluster, cluster_lab, wait_for

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

V1 = shutil.which("docker-compose") or "/usr/bin/docker-compose"
IMAGE = "cl/bb:1"  # pushed to the cluster's registry


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    if DOCKER is None:
        pytest.skip("docker CLI not installed")
    with cluster_lab() as c:
        yield c


@pytest.fixture
def cl(cluster: Cluster) -> Iterator[Cluster]:
    yield cluster
    cluster.clean()


def names(c: Cluster) -> list[str]:
    return c.docker("network", "ls", "--format", "{{.Name}}").stdout.split()


def node_has(c: Cluster, node: str, network: str) -> bool:
    status, _ = c.nodes[node].request("GET", f"/networks/{network}")
    return status == 200


def test_networks_through_the_manager(cl: Cluster) -> None:
    cl.docker("network", "create", "-d", "overlay", "--subnet", f"10.249.{cl.net}.0/24", "ovn")
    listed = names(cl)
    assert listed.count("ovn") == 1  # a global network once
    assert {f"{n}/bridge" for n, _ in NODES} <= set(listed)  # local ones per node
    assert all(node_has(cl, n, "ovn") for n, _ in NODES)  # on every node when the create returns
    seen = json.loads(cl.docker("network", "inspect", "ovn").stdout)[0]
    assert seen["Driver"] == "overlay" and seen["Scope"] == "global"
    # no driver (and bridge, as compose sends): an overlay network, as classic Swarm made it
    cl.docker("network", "create", "plain")
    assert json.loads(cl.docker("network", "inspect", "plain").stdout)[0]["Driver"] == "overlay"
    dup = cl.docker("network", "create", "-d", "overlay", "ovn", check=False)
    assert dup.returncode != 0 and "already exists" in dup.stderr
    # a local network is named after its node, and a container on it lands there
    cl.docker("network", "create", "fe-2/loc")
    assert "fe-2/loc" in names(cl) and node_has(cl, "fe-2", "loc") and not node_has(cl, "fe-1", "loc")
    assert json.loads(cl.docker("network", "inspect", "fe-2/loc").stdout)[0]["Driver"] == "bridge"
    local = cl.docker("run", "-d", "--network", "fe-2/loc", "busybox", "sleep", "1d").stdout.strip()
    assert cl.where(local) == "fe-2"
    # containers on two nodes reach each other by name over the overlay network
    cl.docker("run", "-d", "--name", "aa", "--network", "ovn", "-e", "constraint:node==fe-1", "busybox", "sleep", "1d")
    cl.docker("run", "-d", "--name", "bb", "--network", "ovn", "-e", "constraint:node==db-1", "busybox", "sleep", "1d")
    assert wait_for(lambda: cl.docker("exec", "aa", "ping", "-c", "1", "-W", "1", "bb", check=False).returncode == 0,
                    10, "aa to reach bb by name")
    # connect and disconnect reach the container's node
    cl.docker("run", "-d", "--name", "cc", "-e", "constraint:node==fe-2", "busybox", "sleep", "1d")
    cl.docker("network", "connect", "--alias", "late", "ovn", "cc")
    assert wait_for(lambda: cl.docker("exec", "bb", "ping", "-c", "1", "-W", "1", "late", check=False).returncode == 0,
                    10, "bb to reach the connected container by its alias")
    cl.docker("network", "disconnect", "ovn", "cc")
    assert "ovn" not in json.loads(cl.docker("inspect", "cc").stdout)[0]["NetworkSettings"]["Networks"]
    # removal: from every node; prune: the unused ones, named after their node
    cl.docker("network", "rm", "plain")
    assert "plain" not in names(cl) and not any(node_has(cl, n, "plain") for n, _ in NODES)
    ambiguous = cl.docker("network", "inspect", "bridge", check=False)
    assert ambiguous.returncode != 0 and "use <node>/bridge" in ambiguous.stderr
    cl.docker("network", "create", "db-1/spare")
    pruned = cl.docker("network", "prune", "-f").stdout
    assert "db-1/spare" in pruned and "ovn" not in pruned and "spare" not in " ".join(names(cl))


@pytest.fixture(scope="module")
def registry(cluster: Cluster) -> Iterator[str]:
    """A registry inside fe-1's namespace (every node reaches it, insecure) holding cl/bb:1, which no
    node holds locally: the project's first up pulls it."""
    first = cluster.nodes["fe-1"]
    proc = subprocess.Popen(
        ["nsenter", f"--net={first.netns}", "--", os.path.join(os.path.dirname(sys.executable), "berth-registry"),
         "serve", "--addr", cluster.registry, "--root", os.path.join(cluster.root, "registry")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    image = f"{cluster.registry}/{IMAGE}"
    assert DOCKER is not None
    node = [DOCKER, "-H", first.host]
    try:
        subprocess.run([*node, "tag", "busybox", image], check=True, capture_output=True)
        wait_for(lambda: subprocess.run([*node, "push", image], capture_output=True).returncode == 0, 15,
                 "the push to the registry")
        subprocess.run([*node, "rmi", image], check=True, capture_output=True)
        yield image
    finally:
        proc.terminate()
        proc.wait(10)
        for h in cluster.nodes.values():
            h.request("DELETE", f"/images/{image}")


def test_create_pulls_a_missing_image_on_its_node(cl: Cluster, registry: str) -> None:
    """As classic Swarm: the chosen node pulls what it lacks, without the client pulling first."""
    db = cl.nodes["db-1"]
    db.request("DELETE", f"/images/{registry}")
    body = json.dumps({"Image": registry, "Cmd": ["true"], "Env": ["constraint:node==db-1"]}).encode()
    conn = _UnixConnection(cl.sock("m1"), 60)
    conn.request("POST", "/v1.41/containers/create", body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 201, resp.read()
    conn.close()
    assert db.request("GET", f"/images/{registry}/json")[0] == 200


# web serves its own host name, placed by compose's deploy.placement (berth compose) or by classic
# Swarm's environment entry (docker-compose v1, which ignores `deploy`).
PLACEMENT = {
    "berth-compose": "deploy:\n      placement:\n        constraints: [node.labels.type == frontend]",
    "docker-compose-v1": 'environment: ["constraint:type==frontend"]',
}
PROJECT = """
services:
  web:
    image: {image}
    command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www"]
    stop_signal: SIGKILL
    {placement}
  client:
    image: {image}
    command: ["sleep", "1d"]
    stop_signal: SIGKILL
    environment: ["constraint:type==db"]
"""


def berth_compose(c: Cluster, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "berth.cli.main", "-H", f"unix://{c.sock('m1')}", "compose",
                           "-p", root.name, *args], cwd=root, capture_output=True, text=True, timeout=120)


def compose_v1(c: Cluster, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_HOST": f"unix://{c.sock('m1')}", "COMPOSE_DOCKER_CLI_BUILD": "0",
           "COMPOSE_INTERACTIVE_NO_CLI": "1"}
    return subprocess.run([V1, "-p", root.name, *args], cwd=root, env=env, capture_output=True, text=True,
                          timeout=120)


TOOLS = {"berth-compose": berth_compose, "docker-compose-v1": compose_v1}


@pytest.mark.parametrize("tool", list(TOOLS))
def test_compose_project_on_the_cluster(cl: Cluster, registry: str, tool: str, tmp_path: Path) -> None:
    if tool == "docker-compose-v1" and not os.path.exists(V1):
        pytest.skip("docker-compose v1 not installed")
    run = TOOLS[tool]
    root = tmp_path / f"cc{tool[:2]}"
    root.mkdir()
    (root / "docker-compose.yml").write_text(PROJECT.format(image=registry, placement=PLACEMENT[tool]))
    up = run(cl, root, "up", "-d", "--scale", "web=2")
    assert up.returncode == 0, up.stdout + up.stderr
    label = json.dumps({"label": [f"com.docker.compose.project={root.name}"]})
    ps = cl.docker("ps", "--filter", f"label=com.docker.compose.project={root.name}", "--format",
                   '{{.Names}} {{.Label "com.docker.compose.service"}}').stdout.split("\n")
    placed = sorted(line.split() for line in ps if line)
    nodes = {svc: sorted(name.split("/")[0] for name, s in placed if s == svc) for svc in ("web", "client")}
    assert nodes == {"web": ["fe-1", "fe-2"], "client": ["db-1"]}, placed  # placement, and scale spread
    # the project's network is an overlay network, listed once
    nets = json.loads(cl.docker("network", "inspect", f"{root.name}_default").stdout)
    assert nets[0]["Driver"] == "overlay" and names(cl).count(f"{root.name}_default") == 1, label
    # by name across nodes: the client (db-1) reaches web's replicas (fe-1, fe-2) by the service name,
    # which answers both addresses, and each by its container name
    client = next(name for name, s in placed if s == "client")
    webs = {name.split("/")[1]: json.loads(cl.docker("inspect", name).stdout)[0] for name, s in placed if s == "web"}
    ips = {w["NetworkSettings"]["Networks"][f"{root.name}_default"]["IPAddress"] for w in webs.values()}

    def fetch(target: str) -> str:
        return cl.docker("exec", client, "wget", "-q", "-O-", f"http://{target}/", check=False).stdout.strip()
    assert wait_for(lambda: fetch("web") in {w["Config"]["Hostname"] for w in webs.values()}, 10, "web by name")
    for name, w in webs.items():
        assert fetch(name) == w["Config"]["Hostname"]
    out = cl.docker("exec", client, "nslookup", "web", "127.0.0.11").stdout
    assert {line.split()[-1] for line in out.splitlines() if line.startswith("Address") and "127.0.0.11" not in line} \
        == ips
    down = run(cl, root, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert cl.docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={root.name}").stdout.strip() == ""
    assert f"{root.name}_default" not in names(cl)


@pytest.mark.parametrize("tool", list(TOOLS))
def test_compose_build_needs_a_pushed_image(cl: Cluster, tool: str, tmp_path: Path) -> None:
    if tool == "docker-compose-v1" and not os.path.exists(V1):
        pytest.skip("docker-compose v1 not installed")
    root = tmp_path / f"cb{tool[:2]}"
    root.mkdir()
    (root / "Dockerfile").write_text("FROM busybox\n")
    (root / "docker-compose.yml").write_text("services:\n  app:\n    build: .\n")
    up = TOOLS[tool](cl, root, "up", "-d")
    print(up.stdout, up.stderr)
    assert up.returncode != 0
    assert "a cluster needs a pushed image" in up.stdout + up.stderr
    assert cl.docker("ps", "-aq").stdout.strip() == ""
