"""The cluster manager end to end, on the cluster of cluster_lab.py (3-member etcd, three netns hosts,
managers driven with the real docker CLI). One cluster for the module; each test removes the
containers it made."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from .cluster_lab import DOCKER, NODES, TTL, Cluster, cluster_lab, stop, wait_for

pytestmark = pytest.mark.root


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


def run_d(c: Cluster, *args: str, manager: str = "m1") -> str:
    return c.docker("run", "-d", *args, manager=manager).stdout.strip()


def test_info_shows_nodes_with_labels_and_strategy(cl: Cluster) -> None:
    out = cl.docker("info").stdout
    for name, _ in NODES:
        assert f" {name}: unix://{cl.nodes[name].socket}" in out
    assert "type=frontend" in out and "type=db" in out
    assert "Strategy: spread" in out and "Nodes: 3" in out
    assert "Filters: health, port, containerslots, dependency, affinity, constraint" in out
    assert out.count("Status: Healthy") == 3


def test_constraint_places_and_is_removed_from_env(cl: Cluster) -> None:
    cid = run_d(cl, "-e", "constraint:type==frontend", "-e", "KEEP=1", "busybox", "sleep", "1d")
    info = json.loads(cl.docker("inspect", cid).stdout)[0]
    assert info["Node"]["Name"] in ("fe-1", "fe-2")
    assert not any(e.startswith("constraint:") for e in info["Config"]["Env"])
    assert "KEEP=1" in info["Config"]["Env"]
    assert json.loads(info["Config"]["Labels"]["com.docker.swarm.constraints"]) == ["type==frontend"]

    bad = cl.docker("run", "-d", "-e", "constraint:type==nope", "busybox", "true", check=False)
    assert bad.returncode != 0 and "unable to find a node that satisfies the constraint" in bad.stderr
    soft = run_d(cl, "-e", "constraint:type==~nope", "busybox", "sleep", "1d")
    assert cl.where(soft) in {n for n, _ in NODES}


def test_ps_aggregates_with_node_names_and_filter(cl: Cluster) -> None:
    run_d(cl, "--name", "web", "-e", "constraint:node==fe-2", "busybox", "sleep", "1d")
    names = cl.docker("ps", "--format", "{{.Names}}").stdout.split()
    assert names == ["fe-2/web"]
    assert cl.docker("ps", "--filter", "node=fe-1", "-q").stdout.strip() == ""
    assert cl.docker("ps", "--filter", "node=fe-2", "-q").stdout.strip() != ""
    dup = cl.docker("run", "-d", "--name", "web", "busybox", "true", check=False)
    assert dup.returncode != 0 and "already in use" in dup.stderr  # names are cluster-wide


def test_routes_to_the_node_logs_exec_attach_stop_rm(cl: Cluster) -> None:
    out = cl.docker("run", "--rm", "-e", "constraint:type==db", "busybox", "echo", "hello-db")
    assert out.stdout.strip() == "hello-db"
    # attached output survives the client's half-close every time (the proxied stream once got
    # garbage-collected mid-way)
    assert [cl.docker("run", "--rm", "busybox", "echo", f"n{i}").stdout for i in range(5)] == \
        [f"n{i}\n" for i in range(5)]
    run_d(cl, "--name", "talk", "busybox", "sh", "-c", "echo started; sleep 1d")
    wait_for(lambda: "started" in cl.docker("logs", "talk").stdout, 10, "logs")
    assert cl.docker("exec", "talk", "echo", "in-exec").stdout.strip() == "in-exec"
    piped = subprocess.run([DOCKER or "docker", "-H", f"unix://{cl.sock('m1')}", "exec", "-i", "talk", "cat"],
                           input="via-stdin\n", capture_output=True, text=True, timeout=30)
    assert piped.stdout == "via-stdin\n"
    run_d(cl, "--name", "brief", "busybox", "sh", "-c", "echo one; sleep 0.5; echo two")
    assert cl.docker("logs", "-f", "brief").stdout == "one\ntwo\n"  # followed to the exit
    assert cl.docker("wait", "brief").stdout.strip() == "0"
    cl.docker("kill", "talk")
    assert json.loads(cl.docker("inspect", "talk").stdout)[0]["State"]["Running"] is False
    cl.docker("start", "talk")
    cl.docker("stop", "-t", "1", "talk")
    assert json.loads(cl.docker("inspect", "talk").stdout)[0]["State"]["Running"] is False
    cl.docker("rm", "talk", "brief")
    assert cl.docker("ps", "-a", "-q").stdout.strip() == ""
    assert cl.docker("inspect", "talk", check=False).returncode != 0


def test_desired_state_recorded_before_create(cl: Cluster) -> None:
    cid = run_d(cl, "--name", "rec", "busybox", "sleep", "1d")
    recs = wait_for(lambda: [r for r in cl.store.containers() if r.name == "rec" and r.state == "started"], 5,
                    "the record")
    assert len(recs) == 1 and recs[0].id == cid  # type: ignore[index, arg-type]
    assert recs[0].node == cl.where(cid)  # type: ignore[index]
    cl.docker("rm", "-f", "rec")
    assert not [r for r in cl.store.containers() if r.name == "rec"]
    # a record is written before the create: a name held in etcd refuses the create, and no
    # container appears on any node
    cl.store.etcd.put(cl.store.key("names", "held"), "someone-else")
    assert cl.docker("run", "-d", "--name", "held", "busybox", "true", check=False).returncode != 0
    assert _copies(cl, "held") == []
    # an unnamed container gets its name from the manager; auto-removed ones lose their records
    out = cl.docker("run", "--rm", "busybox", "echo", "bye").stdout
    assert out == "bye\n"
    wait_for(lambda: not cl.store.containers(), 6, "the auto-removed container's record to go")


def test_spread_two_per_node(cl: Cluster) -> None:
    ids = [run_d(cl, "busybox", "sleep", "1d") for _ in range(6)]
    counts: dict[str, int] = {}
    for cid in ids:
        counts[cl.where(cid)] = counts.get(cl.where(cid), 0) + 1
    assert sorted(counts.values()) == [2, 2, 2]


def test_binpack_fills_one_node_first(cl: Cluster) -> None:
    cl.start_manager("bp", strategy="binpack")
    try:
        ids = [run_d(cl, "-m", "64m", "busybox", "sleep", "1d", manager="bp") for _ in range(3)]
        assert len({cl.where(cid) for cid in ids}) == 1
    finally:
        p = cl.managers.pop("bp")
        stop(p)
        assert p.returncode == 0  # a clean exit on SIGTERM, though node waits were still open


def test_affinity_co_locates(cl: Cluster) -> None:
    # (docker wants names of two characters at least)
    run_d(cl, "--name", "aa", "busybox", "sleep", "1d")
    b = run_d(cl, "--name", "bb", "-e", "affinity:container==aa", "busybox", "sleep", "1d")
    c = run_d(cl, "--name", "cc", "-e", "affinity:container!=aa", "busybox", "sleep", "1d")
    assert cl.where(b) == cl.where("aa") != cl.where(c)


def test_host_port_fourth_refused(cl: Cluster) -> None:
    ids = [run_d(cl, "-p", "8080:80", "busybox", "sleep", "1d") for _ in range(3)]
    assert len({cl.where(cid) for cid in ids}) == 3
    fourth = cl.docker("run", "-d", "-p", "8080:80", "busybox", "sleep", "1d", check=False)
    assert fourth.returncode != 0 and "8080" in fourth.stderr


def _copies(c: Cluster, name: str) -> list[str]:
    out = []
    for node, h in c.nodes.items():
        status, body = h.request("GET", "/containers/json?all=1", timeout=5)
        out += [node for x in json.loads(body) if f"/{name}" in x["Names"]]
    return out


def test_node_failure_reschedules_once_and_no_duplicates_on_return(cl: Cluster) -> None:
    run_d(cl, "--name", "keep", "-e", "reschedule:on-node-failure", "-e", "constraint:type==frontend",
          "busybox", "sleep", "1d")
    victim = cl.where("keep")
    other = "fe-1" if victim == "fe-2" else "fe-2"
    h = cl.nodes[victim]
    h.signal(signal.SIGSTOP)  # frozen: answers nothing, its containers keep running
    try:
        started = time.monotonic()
        wait_for(lambda: victim not in cl.healthy(), 10, "the frozen node to turn unhealthy")
        assert time.monotonic() - started < 10
        assert "Status: Unhealthy" in cl.docker("info").stdout
        moved = wait_for(lambda: [r for r in cl.store.containers() if r.name == "keep" and r.state == "started"
                                  and r.node == other], 10, "the reschedule")
        assert len(moved) == 1  # type: ignore[arg-type]
        new = run_d(cl, "-e", "constraint:type==frontend", "busybox", "sleep", "1d")
        assert cl.where(new) == other  # new containers avoid the unhealthy node
    finally:
        h.signal(signal.SIGCONT)
    wait_for(lambda: victim in cl.healthy(), 10, "the node to come back")
    wait_for(lambda: _copies(cl, "keep") == [other], 10, "the stale copy to be removed")
    time.sleep(1.5)  # a few more reconcile passes: still exactly one
    assert _copies(cl, "keep") == [other]
    assert cl.docker("ps", "--filter", "name=keep", "--format", "{{.Names}}").stdout.split() == [f"{other}/keep"]


def test_image_pull_fans_out_to_every_node(cl: Cluster) -> None:
    first = cl.nodes["fe-1"]
    reg_root = os.path.join(cl.root, "registry")
    registry = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{first.record.details['netns']}", "--",
         os.path.join(os.path.dirname(sys.executable), "berth-registry"), "serve", "--addr", cl.registry,
         "--root", reg_root], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    image = f"{cl.registry}/fan/bb:1"
    try:
        assert DOCKER is not None
        node = [DOCKER, "-H", first.host]
        subprocess.run([*node, "tag", "busybox", image], check=True, capture_output=True)
        wait_for(lambda: subprocess.run([*node, "push", image], capture_output=True).returncode == 0, 15,
                 "the push to the registry")
        subprocess.run([*node, "rmi", image], check=True, capture_output=True)
        out = cl.docker("pull", image).stdout
        for name, _ in NODES:
            assert name in out  # progress names each node
        for name, h in cl.nodes.items():
            status, _ = h.request("GET", f"/images/{image}/json")
            assert status == 200, name
        assert image in cl.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    finally:
        registry.terminate()
        registry.wait(10)
        for h in cl.nodes.values():
            h.request("DELETE", f"/images/{image}")


def test_leader_fail_over(cl: Cluster) -> None:
    assert "Role: primary" in cl.docker("info").stdout
    cl.start_manager("m2")
    assert "Role: replica" in cl.docker("info", manager="m2").stdout
    run_d(cl, "--name", "ha", "-e", "reschedule:on-node-failure", "-e", "constraint:type==frontend",
          "busybox", "sleep", "1d", manager="m2")
    m1 = cl.managers["m1"]
    m1.send_signal(signal.SIGKILL)
    m1.wait(5)
    started = time.monotonic()
    wait_for(lambda: "Role: primary" in cl.docker("info", manager="m2").stdout, TTL + 3, "m2 to lead")
    took = time.monotonic() - started
    print(f"fail-over took {took:.2f} s (lease TTL {TTL} s)")
    assert took <= TTL + 3  # the lease time, and the slack of etcd's lease expiry checks and a loaded machine
    # The new leader reschedules, once.
    victim = cl.where("ha", manager="m2")
    cl.nodes[victim].signal(signal.SIGSTOP)
    try:
        wait_for(lambda: [r for r in cl.store.containers() if r.name == "ha" and r.node != victim
                          and r.state == "started"], 15, "the reschedule by the new leader")
    finally:
        cl.nodes[victim].signal(signal.SIGCONT)
    wait_for(lambda: len(_copies(cl, "ha")) == 1, 10, "one copy")
    assert [r.moves for r in cl.store.containers() if r.name == "ha"] == [1]
    # m1 comes back as a follower
    sock = cl.start_manager("m1")
    assert os.path.exists(sock)
    wait_for(lambda: "Role: replica" in cl.docker("info").stdout, 10, "m1 as replica")
