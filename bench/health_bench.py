#!/usr/bin/env python3
"""Health checks on berth next to dockerd: what a probe costs.

    python3 bench/health_bench.py [--berth unix:///run/berth/berth.sock]
                                  [--dockerd unix:///var/run/docker.sock] [-n 5] [--seconds 10]

Per engine: N containers run `--health-cmd true --health-interval 200ms` for S seconds; reported
are the median probe duration (End - Start of State.Health.Log entries, i.e. one exec) and the
CPU time per probe of the engine (the daemon found by its socket, its descendants, and for
dockerd the containerd shims; children's reaped CPU included, so runc exec and the probe count),
from /proc/PID/stat before and after. Stdlib only; the docker CLI drives both engines.
Containers are named `hbench-*` and removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import datetime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run_bench import listening_socket_owner  # noqa: E402

SHIMS = ("containerd-shim", "containerd-shim-runc-v2")


def docker(host: str, *args: str) -> str:
    env = dict(os.environ, DOCKER_HOST=host)
    return subprocess.run(["docker", *args], env=env, capture_output=True, text=True, check=True).stdout


def _cpu_ticks(host: str) -> int:
    """utime + stime + reaped children's of the engine's processes (see the module's doc)."""
    daemon = listening_socket_owner(host.removeprefix("unix://"))
    stats: dict[int, list[str]] = {}
    comms: dict[int, str] = {}
    for pid in map(int, filter(str.isdigit, os.listdir("/proc"))):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comms[pid] = stat[stat.index("(") + 1:stat.rindex(")")]
        stats[pid] = stat[stat.rindex(")") + 2:].split()
    members = {daemon} | {pid for pid, c in comms.items() if c in SHIMS}
    grown = True
    while grown:
        grown = False
        for pid, fields in stats.items():
            if int(fields[1]) in members and pid not in members:
                members.add(pid)
                grown = True
    return sum(sum(int(x) for x in stats[pid][11:15]) for pid in members if pid in stats)


def _ts(text: str) -> float:
    main, _, frac = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(main + "+00:00").timestamp() + float("0." + (frac or "0"))


def measure(host: str, n: int, seconds: float) -> dict[str, float]:
    names = [f"hbench-{uuid.uuid4().hex[:8]}" for _ in range(n)]
    try:
        for name in names:
            docker(host, "run", "-d", "--name", name, "--health-cmd", "true", "--health-interval", "200ms",
                   "busybox", "sleep", "1000")
        time.sleep(1)
        before, t0 = _cpu_ticks(host), time.time()
        time.sleep(seconds)
        ticks, elapsed = _cpu_ticks(host) - before, time.time() - t0
        durations = []
        for name in names:
            health = json.loads(docker(host, "inspect", "-f", "{{json .State.Health}}", name))
            durations += [_ts(e["End"]) - _ts(e["Start"]) for e in health["Log"]]
        probes = n * elapsed / 0.2
        hz = os.sysconf("SC_CLK_TCK")
        return {"probe_ms": statistics.median(durations) * 1000, "cpu_ms_per_probe": ticks / hz * 1000 / probes}
    finally:
        subprocess.run(["docker", "rm", "-f", *names], env=dict(os.environ, DOCKER_HOST=host), capture_output=True,
                       check=False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--berth", default="unix:///run/berth/berth.sock")
    p.add_argument("--dockerd", default="unix:///var/run/docker.sock")
    p.add_argument("-n", type=int, default=5)
    p.add_argument("--seconds", type=float, default=10)
    args = p.parse_args()
    for label, host in (("berth", args.berth), ("dockerd", args.dockerd)):
        try:
            r = measure(host, args.n, args.seconds)
        except (subprocess.CalledProcessError, OSError) as e:
            print(f"{label}: n/a ({e})")
            continue
        print(f"{label:8} probe (one exec) median {r['probe_ms']:.1f} ms; engine CPU per probe "
              f"{r['cpu_ms_per_probe']:.2f} ms")


if __name__ == "__main__":
    main()
