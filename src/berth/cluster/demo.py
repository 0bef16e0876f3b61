"""`berth cluster demo`: a cluster on this machine to try things with.

One etcd member, three netns hosts from the machine driver (`demo-fe-1`, `demo-fe-2` labelled
`type=frontend`, `demo-db-1` labelled `type=db`), a join agent per host and a manager on a unix
socket, all under the state directory; `--down` removes every part of it. The engines keep their
overlay networks in the same etcd (`--cluster-store`, reached over the hosts' segment: lab.py).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

from berth.client.api import APIClient
from berth.client.errors import ClientError, DaemonUnreachable
from berth.cluster.lab import close_uplink, cluster_store_options, open_uplink, uplink_for
from berth.cluster.store import ClusterStore
from berth.etcd import EtcdClient, EtcdError
from berth.etcd.local import start_local_etcd
from berth.machine.driver import MachineRecord
from berth.machine.model import EngineSpec, MachineError, MachineSpec
from berth.machine.netns import NetnsDriver

HOSTS = (("demo-fe-1", "frontend", "10.251.0.11/24"), ("demo-fe-2", "frontend", "10.251.0.12/24"),
         ("demo-db-1", "db", "10.251.0.13/24"))
BUSYBOX_SOURCES = ("/tmp/berth-test-busybox.tar",)
UPLINK = "10.251.0.1/24"  # this machine on the hosts' segment: the etcd member listens here
HOST_DAEMON = "unix:///run/berth/berth.sock"
DEFAULT_STATE_DIR = "/run/berth-cluster-demo"


def _state_file(state_dir: str) -> str:
    return os.path.join(state_dir, "demo.json")


def _spawn(args: list[str], log: str) -> int:
    with open(log, "ab") as f:
        proc = subprocess.Popen([sys.executable, "-m", "berth.cluster.main", *args], stdout=f,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    return proc.pid


def _load_busybox(address: str) -> str:
    """busybox:latest onto a demo host: from the test archive or the host's own berthd, if either exists."""
    client = APIClient(address, timeout=60)
    for path in BUSYBOX_SOURCES:
        if os.path.exists(path):
            with open(path, "rb") as f:
                client.images.load(f.read(), quiet=True).read()
            return "busybox:latest"
    try:
        data = APIClient(HOST_DAEMON, timeout=60).images.get(["busybox:latest"]).read()
        client.images.load(data, quiet=True).read()
        return "busybox:latest"
    except (ClientError, DaemonUnreachable, OSError):
        return ""


def up(state_dir: str, strategy: str = "spread") -> int:
    if os.path.exists(_state_file(state_dir)):
        with open(_state_file(state_dir)) as f:
            print(f"The demo cluster is up already: DOCKER_HOST={json.load(f)['address']}")
        return 0
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    state: dict[str, Any] = {"agents": [], "machines": []}
    driver = NetnsDriver(os.path.join(state_dir, "machines"))
    address = f"unix://{os.path.join(state_dir, 'manager.sock')}"
    state["address"] = address
    try:
        uplink = open_uplink(driver, UPLINK)
        state["uplink"] = UPLINK
        _save(state_dir, state)
        etcd = start_local_etcd(os.path.join(state_dir, "etcd"), 1, host=uplink.ip)
        state["etcd"] = {"pids": [m.pid for m in etcd.members], "endpoints": etcd.endpoints}
        _save(state_dir, state)
        for name, kind, ip in HOSTS:
            engine = EngineSpec(labels={"type": kind}, options=cluster_store_options(etcd.endpoints))
            record = driver.create(MachineSpec(name, "netns", {"address": ip}, engine))
            state["machines"].append(record.to_dict())
            _save(state_dir, state)
            image = _load_busybox(driver.url(record))
            state["agents"].append(_spawn(["join", "--etcd", etcd.endpoints[0], "--advertise", driver.url(record),
                                           "--name", name], os.path.join(state_dir, f"join-{name}.log")))
        state["manager"] = _spawn(["manage", "--etcd", etcd.endpoints[0], "--addr", address, "--strategy", strategy],
                                  os.path.join(state_dir, "manager.log"))
        _save(state_dir, state)
        store = ClusterStore(EtcdClient(etcd.endpoints))
        deadline = time.monotonic() + 30
        while sum(ok for _, ok in store.nodes()) < len(HOSTS) or not os.path.exists(address[len("unix://"):]):
            if time.monotonic() > deadline:
                raise OSError(f"the demo cluster did not come up; logs are in {state_dir}")
            time.sleep(0.1)
    except (MachineError, OSError, RuntimeError, EtcdError) as e:
        print(f"berth cluster demo: {e}", file=sys.stderr)
        down(state_dir)
        return 1
    print(f"""The demo cluster is up: etcd {etcd.endpoints[0]}, three netns hosts, a manager ({strategy}).

  export DOCKER_HOST={address}
  docker info                                                  # the nodes and their labels
  docker run -d -e constraint:type==frontend busybox sleep 1d  # lands on demo-fe-1 or demo-fe-2
  docker ps                                                    # names are /<node>/<name>
  docker network create -d overlay web                         # one network across the hosts
{"" if image else "  (no busybox image was found to preload: pull or load one through the manager)"}
Remove it all with: berth cluster demo --down{"" if state_dir == DEFAULT_STATE_DIR else f" --state-dir {state_dir}"}""")
    return 0


def _save(state_dir: str, state: dict[str, Any]) -> None:
    tmp = _state_file(state_dir) + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.rename(tmp, _state_file(state_dir))


def _ours(pid: int, state_dir: str) -> bool:
    """Only signal a process whose command line names the demo's directory (pids get reused)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return state_dir.encode() in f.read()
    except OSError:
        return False


def _terminate(pids: list[int], state_dir: str) -> None:
    for pid in pids:
        if _ours(pid, state_dir):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 10
    for pid in pids:
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.05)
        if os.path.exists(f"/proc/{pid}") and _ours(pid, state_dir):
            os.kill(pid, signal.SIGKILL)


def down(state_dir: str) -> int:
    try:
        with open(_state_file(state_dir)) as f:
            state = json.load(f)
    except FileNotFoundError:
        state = {}
    _terminate([p for p in [state.get("manager"), *state.get("agents", [])] if p], state_dir)
    driver = NetnsDriver(os.path.join(state_dir, "machines"))
    failed = False
    for rec in state.get("machines", []):
        try:
            driver.remove(MachineRecord.from_dict(rec))
        except MachineError as e:
            print(f"berth cluster demo --down: {e}", file=sys.stderr)
            failed = True
    _terminate(list(state.get("etcd", {}).get("pids", [])), state_dir)
    if state.get("uplink"):
        close_uplink(uplink_for(driver, state["uplink"]))
    if not failed:
        shutil.rmtree(state_dir, ignore_errors=True)
        print("The demo cluster is gone.")
    return 1 if failed else 0
