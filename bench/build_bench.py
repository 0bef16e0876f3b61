#!/usr/bin/env python3
"""The issue's 6-step Dockerfile built by berthd, dockerd's legacy builder and dockerd's BuildKit.

    python3 bench/build_bench.py [--berth unix:///run/berth/berth.sock]
                                 [--dockerd unix:///var/run/docker.sock] [-n 3]
                                 [--skip berth|dockerd|buildkit]

BuildKit runs with `DOCKER_BUILDKIT=1` through a docker CLI that can drive it: the one on PATH if
it has the buildx plugin, else Debian's docker.io CLI (20.10, /usr/bin/docker), which has BuildKit
built in; with neither, that column is left out, with a note.

Per engine, median of N rounds (engines alternate round by round): a cold build (`--no-cache`),
a rebuild with no change (all cache hits), a rebuild after editing the copied 5 MiB file (COPY,
two RUNs and CMD run again). Every final image carries a `berth-bench=<uuid>` label and is
removed at the end. Stdlib only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

DOCKERFILE = """\
FROM busybox
ENV APP=bench
WORKDIR /app
COPY data.bin ./
RUN wc -c data.bin > size.txt
RUN sha256sum data.bin > sum.txt
CMD ["cat", "size.txt"]
"""


BUILDKIT_CLI = ["docker"]  # the CLI that drives BuildKit (main() may pick Debian's 20.10 one)


def docker(host: str, *args: str, check: bool = True, buildkit: bool = False) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DOCKER_HOST=host, DOCKER_BUILDKIT="1" if buildkit else "0")
    env.pop("DOCKER_CONTEXT", None)
    p = subprocess.run([*(BUILDKIT_CLI if buildkit else ["docker"]), *args], capture_output=True, text=True, env=env)
    if check and p.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} on {host}: {p.stderr.strip()}")
    return p


def timed_build(host: str, buildkit: bool, ctx: str, label: str, *extra: str) -> float:
    t0 = time.perf_counter()
    docker(host, "build", "-q", "--label", label, "-t", "berth-bench-build:latest", *extra, ctx, buildkit=buildkit)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--berth", default="unix:///run/berth/berth.sock")
    p.add_argument("--dockerd", default="unix:///var/run/docker.sock")
    p.add_argument("-n", type=int, default=3)
    p.add_argument("--skip", choices=["berth", "dockerd", "buildkit"], action="append", default=[])
    args = p.parse_args()
    candidates = (("berth", args.berth, False), ("dockerd", args.dockerd, False), ("buildkit", args.dockerd, True))
    engines = {name: (host, bk) for name, host, bk in candidates
               if name not in args.skip and docker(host, "version", check=False).returncode == 0}
    if "buildkit" in engines and docker(args.dockerd, "buildx", "version", check=False).returncode != 0:
        legacy_cli = "/usr/bin/docker"  # Debian docker.io's 20.10 CLI: BuildKit built in, no buildx needed
        if os.access(legacy_cli, os.X_OK) and subprocess.run(
                [legacy_cli, "--version"], capture_output=True, text=True).stdout.startswith("Docker version 20."):
            BUILDKIT_CLI[:] = [legacy_cli]
            print(f"note: no buildx plugin: BuildKit driven by {legacy_cli} (20.10, built-in BuildKit)", file=sys.stderr)
        else:
            print("note: no buildx plugin and no 20.10 docker CLI here: BuildKit not measured", file=sys.stderr)
            del engines["buildkit"]
    if not engines:
        sys.exit("no engine answers")
    run_id = uuid.uuid4().hex[:12]
    label = f"berth-bench={run_id}"
    results: dict[str, dict[str, list[float]]] = {e: {"cold": [], "nochange": [], "edited": []} for e in engines}
    with tempfile.TemporaryDirectory(prefix="build-bench-") as ctx:
        with open(os.path.join(ctx, "Dockerfile"), "w") as f:
            f.write(DOCKERFILE)
        data = os.path.join(ctx, "data.bin")
        try:
            for _ in range(args.n):
                for name, (host, bk) in engines.items():
                    with open(data, "wb") as f:
                        f.write(os.urandom(5 << 20))
                    results[name]["cold"].append(timed_build(host, bk, ctx, label, "--no-cache"))
                    results[name]["nochange"].append(timed_build(host, bk, ctx, label))
                    with open(data, "r+b") as f:
                        f.write(os.urandom(16))
                    results[name]["edited"].append(timed_build(host, bk, ctx, label))
        finally:
            for host in {h for h, _ in engines.values()}:
                ids = docker(host, "images", "-q", "--filter", f"label={label}", check=False).stdout.split()
                if ids:
                    docker(host, "rmi", "-f", *sorted(set(ids)), check=False)
    # Ratios are berth's time over each other engine's.
    others = [e for e in engines if e != "berth"] if "berth" in engines else []
    print(f"{'build (median of ' + str(args.n) + ')':<40}" + "".join(f"{e:>12}" for e in engines)
          + "".join(f"{'/' + e:>12}" for e in others))
    for row, title in (("cold", "cold (--no-cache)"), ("nochange", "no-change rebuild"),
                       ("edited", "rebuild after editing the 5 MiB file")):
        meds = {e: statistics.median(results[e][row]) for e in engines}
        line = f"{title:<40}" + "".join(f"{m:>11.3f}s" for m in meds.values())
        line += "".join(f"{meds['berth'] / meds[e]:>11.2f}x" for e in others)
        print(line)


if __name__ == "__main__":
    main()
