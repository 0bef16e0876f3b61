"""Cluster manager benchmark: scheduling 60 containers over 3 nodes through the manager, and the
extra latency of `docker run -d` through the manager over the same run straight against a node,
and an overlay network through the manager (create, `run -d` on it, rm).

    python3 bench/cluster_bench.py                     # brings up `berth cluster demo` in its own dir, then removes it
    python3 bench/cluster_bench.py --manager unix:///run/berth-cluster-demo/manager.sock \\
        --node unix:///run/berth-cluster-demo/machines/demo-fe-1/berth.sock   # an existing cluster

Needs root, the docker CLI and busybox:latest on the nodes. The demo's host names are fixed, so
do not run it while `berth cluster demo` is up elsewhere (point it at that cluster instead).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
STATE_DIR = "/tmp/berth-cluster-bench"


def docker(host: str, *args: str) -> str:
    res = subprocess.run([DOCKER, "-H", host, *args], capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {res.stderr.strip()}")
    return res.stdout.strip()


def timed(host: str, *args: str) -> tuple[float, str]:
    started = time.perf_counter()
    out = docker(host, *args)
    return time.perf_counter() - started, out


def schedule_60(manager: str, workers: int) -> dict[str, object]:
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        ids = list(pool.map(lambda _: docker(manager, "run", "-d", "--label", "bench=1", "busybox", "sleep", "1d"),
                            range(60)))
    elapsed = time.perf_counter() - started
    nodes = Counter(json.loads(docker(manager, "inspect", *ids))[i]["Node"]["Name"] for i in range(len(ids)))
    started = time.perf_counter()
    docker(manager, "rm", "-f", *ids)
    return {"workers": workers, "run_d_60_s": round(elapsed, 2), "per_container_ms": round(elapsed / 60 * 1000, 1),
            "spread": dict(sorted(nodes.items())), "rm_f_60_s": round(time.perf_counter() - started, 2)}


def latency(manager: str, node: str, n: int) -> dict[str, float]:
    via, direct, made = [], [], []
    for _ in range(n):  # alternating, so drift hits both sides alike
        t, cid = timed(manager, "run", "-d", "busybox", "sleep", "1d")
        via.append(t)
        made.append((manager, cid))
        t, cid = timed(node, "run", "-d", "busybox", "sleep", "1d")
        direct.append(t)
        made.append((node, cid))
    for host, cid in made:
        docker(host, "rm", "-f", cid)
    return {"runs": n, "manager_median_ms": round(statistics.median(via) * 1000, 1),
            "node_median_ms": round(statistics.median(direct) * 1000, 1),
            "extra_median_ms": round((statistics.median(via) - statistics.median(direct)) * 1000, 1)}


def api_latency(manager: str, node: str, n: int) -> dict[str, float]:
    """The same through berth's client (create + start), without the CLI's own start-up in the figures."""
    from berth.client.api import APIClient

    clients = {"manager": APIClient(manager), "node": APIClient(node)}
    times: dict[str, list[float]] = {"manager": [], "node": []}
    made = []
    for _ in range(n):
        for side, c in clients.items():
            started = time.perf_counter()
            cid = c.containers.create({"Image": "busybox", "Cmd": ["sleep", "1d"]})["Id"]
            c.containers.start(cid)
            times[side].append(time.perf_counter() - started)
            made.append((c, cid))
    for c, cid in made:
        c.containers.remove(cid, force=True)
    med = {side: statistics.median(t) * 1000 for side, t in times.items()}
    return {"runs": n, "manager_median_ms": round(med["manager"], 1), "node_median_ms": round(med["node"], 1),
            "extra_median_ms": round(med["manager"] - med["node"], 1)}


def overlay(manager: str, n: int) -> dict[str, float]:
    """An overlay network through the manager: its create (until every node has it), `run -d` on it,
    and its removal."""
    t_create, _ = timed(manager, "network", "create", "-d", "overlay", "bench-ov")
    runs, made = [], []
    try:
        for _ in range(n):
            t, cid = timed(manager, "run", "-d", "--network", "bench-ov", "busybox", "sleep", "1d")
            runs.append(t)
            made.append(cid)
    finally:
        if made:
            docker(manager, "rm", "-f", *made)
        t_rm, _ = timed(manager, "network", "rm", "bench-ov")
    return {"runs": n, "network_create_ms": round(t_create * 1000, 1),
            "run_d_median_ms": round(statistics.median(runs) * 1000, 1), "network_rm_ms": round(t_rm * 1000, 1)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--manager")
    ap.add_argument("--node")
    ap.add_argument("-n", type=int, default=20, help="runs per side for the latency comparison")
    args = ap.parse_args()
    own = args.manager is None
    if own:
        subprocess.run([sys.executable, "-m", "berth.cluster.main", "demo", "--state-dir", STATE_DIR], check=True)
        args.manager = f"unix://{STATE_DIR}/manager.sock"
        args.node = f"unix://{STATE_DIR}/machines/demo-fe-1/berth.sock"
    try:
        docker(args.manager, "run", "--rm", "busybox", "true")  # warm-up
        results = {"schedule": [schedule_60(args.manager, 1), schedule_60(args.manager, 6)],
                   "latency_cli": latency(args.manager, args.node, args.n),
                   "latency_api": api_latency(args.manager, args.node, args.n),
                   "overlay": overlay(args.manager, args.n)}
        print(json.dumps(results, indent=2))
    finally:
        if own:
            subprocess.run([sys.executable, "-m", "berth.cluster.main", "demo", "--down", "--state-dir", STATE_DIR],
                           check=False)
    return 0


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("cluster_bench: needs root (netns hosts)")
    sys.exit(main())
