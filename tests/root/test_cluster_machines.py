"""A `cluster:` entry in machines.yml (`engine.cluster`): `berth machine apply` starts each netns
machine's berthd with the cluster store and a join agent, so the machines are healthy nodes with
their labels and share overlay networks; stopping a machine takes its agent along (the node turns
unhealthy), and removing it leaves no agent behind."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from berth.cluster.lab import close_uplink, open_uplink
from berth.cluster.store import ClusterStore
from berth.etcd import EtcdClient
from berth.etcd.local import start_local_etcd
from berth.machine.netns import NetnsDriver

from .cluster_lab import DOCKER, wait_for

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0 or DOCKER is None,
                                                   reason="needs root and the docker CLI")]


def running(pid: int) -> bool:
    """Neither gone nor a zombie (an agent outlives the `berth machine` that started it: init reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_machines_join_the_cluster_from_machines_yml() -> None:
    tag = uuid.uuid4().hex[:6]
    net = int(tag[:2], 16)
    state = tempfile.mkdtemp(prefix="bcm-", dir="/tmp")
    driver = NetnsDriver(state)
    uplink = open_uplink(driver, f"10.247.{net}.1/24")
    etcd = None
    yml = Path(state, "machines.yml")
    names = [f"n1-{tag}", f"n2-{tag}"]

    def machine(*args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "berth.cli.main", "machine", "--state-dir", state,
                               "-f", str(yml), *args], capture_output=True, text=True, timeout=180, cwd=state)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc

    try:
        etcd = start_local_etcd(os.path.join(state, "etcd"), 1, host=uplink.ip)
        yml.write_text(f"""\
defaults:
  driver: netns
  engine:
    cluster:
      etcd: {etcd.endpoints[0]}
      ttl: 2
machines:
  {names[0]}:
    address: 10.247.{net}.11/24
    engine:
      labels: [type=frontend]
  {names[1]}:
    address: 10.247.{net}.12/24
    engine:
      labels: [type=db]
""")
        machine("apply")
        store = ClusterStore(EtcdClient(etcd.endpoints))
        wait_for(lambda: {n.name for n, ok in store.nodes() if ok} == set(names), 10, "both machines as nodes")
        assert {n.name: n.labels for n, _ in store.nodes()} == {names[0]: {"type": "frontend"},
                                                               names[1]: {"type": "db"}}
        # their engines share the store: an overlay network made on one is on the other
        urls = {n: machine("url", n).stdout.strip() for n in names}
        assert DOCKER is not None
        subprocess.run([DOCKER, "-H", urls[names[0]], "network", "create", "-d", "overlay", "ovm"], check=True,
                       capture_output=True)
        wait_for(lambda: "ovm" in subprocess.run([DOCKER, "-H", urls[names[1]], "network", "ls"], capture_output=True,
                                                 text=True).stdout, 10, "the network on the other machine")
        agent_pid = int(Path(state, names[1], "join.pid").read_text())
        machine("stop", names[1])
        assert not running(agent_pid)  # its agent stopped with it
        wait_for(lambda: {n.name for n, ok in store.nodes() if ok} == {names[0]}, 10, "the stopped node unhealthy")
        machine("start", names[1])
        wait_for(lambda: {n.name for n, ok in store.nodes() if ok} == set(names), 10, "the node back")
        agent_pid = int(Path(state, names[1], "join.pid").read_text())
        machine("rm", *names)
        assert not running(agent_pid)
    finally:
        for n in names:
            if os.path.exists(os.path.join(state, n, "machine.json")):
                subprocess.run([sys.executable, "-m", "berth.cli.main", "machine", "--state-dir", state, "rm", "-f", n],
                               capture_output=True, timeout=120)
        if etcd is not None:
            etcd.stop()
        close_uplink(uplink)
        subprocess.run(["rm", "-rf", state], check=False)
