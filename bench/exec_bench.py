#!/usr/bin/env python3
"""`docker exec c true` against berthd next to dockerd, through the real docker CLI.

    python3 bench/exec_bench.py [--berth unix:///run/berth/berth.sock]
                                [--dockerd unix:///var/run/docker.sock] [-n 30]

A `sleep` container named `exec-bench-<id>` is started on each engine (busybox:latest must be
there: `scripts/mkbusybox.py -o - | docker load`), then N execs alternate engine by engine, so
machine drift hits both; medians and the ratio berth/dockerd are printed. The containers are
removed at the end. Stdlib only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
import uuid


def docker(host: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DOCKER_HOST=host)
    env.pop("DOCKER_CONTEXT", None)
    return subprocess.run(["docker", *args], capture_output=True, text=True, env=env)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--berth", default="unix:///run/berth/berth.sock")
    p.add_argument("--dockerd", default="unix:///var/run/docker.sock")
    p.add_argument("-n", type=int, default=30)
    args = p.parse_args()
    name = f"exec-bench-{uuid.uuid4().hex[:8]}"
    engines = {"berth": args.berth, "dockerd": args.dockerd}
    times: dict[str, list[float]] = {e: [] for e in engines}
    try:
        for host in engines.values():
            started = docker(host, "run", "-d", "--name", name, "busybox", "sleep", "3600")
            if started.returncode != 0:
                raise SystemExit(f"cannot start a container on {host}: {started.stderr.strip()}")
        for i in range(args.n + 3):  # three warm-up rounds, not counted
            for engine, host in engines.items():
                t0 = time.perf_counter()
                docker(host, "exec", name, "true")
                if i >= 3:
                    times[engine].append((time.perf_counter() - t0) * 1000)
    finally:
        for host in engines.values():
            docker(host, "rm", "-f", name)
    berth, dockerd = statistics.median(times["berth"]), statistics.median(times["dockerd"])
    print(f"docker exec c true, median of {args.n}: berth {berth:.1f} ms, dockerd {dockerd:.1f} ms, "
          f"ratio {berth / dockerd:.2f}")


if __name__ == "__main__":
    main()
