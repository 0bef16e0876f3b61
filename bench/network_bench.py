#!/usr/bin/env python3
"""`docker run --rm busybox true` on the default bridge, on a user-defined network (built-in DNS)
and on an IPv6 user-defined network, for berth and optionally dockerd, through the real docker CLI.

Runs alternate between the cases and the engines, so machine noise spreads evenly. The networks are
created with a per-run name and removed at the end (also on Ctrl-C). Stdlib only.

    python3 bench/network_bench.py --berth unix:///run/berth/berth.sock \
        [--dockerd unix:///var/run/docker.sock] [-n 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid


def docker(host: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DOCKER_HOST=host)
    env.pop("DOCKER_CONTEXT", None)
    return subprocess.run([shutil.which("docker") or "docker", *args], capture_output=True, text=True, env=env,
                          check=check)


def p90(values: list[float]) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(0.9 * (len(s) - 1))))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--berth", default="unix:///run/berth/berth.sock")
    ap.add_argument("--dockerd", default="", help="also measure this dockerd (it must have busybox:latest)")
    ap.add_argument("-n", "--runs", type=int, default=20)
    ap.add_argument("--image", default="busybox:latest")
    args = ap.parse_args(argv)

    tag = uuid.uuid4().hex[:6]
    engines = {"berth": args.berth, **({"dockerd": args.dockerd} if args.dockerd else {})}
    user, v6 = f"nb-{tag}", f"nb6-{tag}"
    cases = {"default bridge": [], "user network": ["--network", user], "IPv6 user network": ["--network", v6]}
    made: list[tuple[str, str]] = []
    times: dict[tuple[str, str], list[float]] = {(e, c): [] for e in engines for c in cases}
    try:
        for host in engines.values():
            docker(host, "network", "create", user)
            made.append((host, user))
            # a ULA /64 of its own per run (the host may route fd00::/64)
            docker(host, "network", "create", "--ipv6", "--subnet", f"fd5e:{tag[:4]}:{tag[4:]}::/64", v6)
            made.append((host, v6))
            docker(host, "run", "--rm", args.image, "true")  # warm-up: image, driver, caches
        for _ in range(args.runs):
            for name, host in engines.items():
                for case, extra in cases.items():
                    t0 = time.perf_counter()
                    docker(host, "run", "--rm", *extra, args.image, "true")
                    times[(name, case)].append((time.perf_counter() - t0) * 1000)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        for host, net in made:
            docker(host, "network", "rm", net, check=False)
    print(f"docker run --rm {args.image} true, {args.runs} runs each (ms: median / p90)")
    for case in cases:
        cols = []
        for name in engines:
            v = times[(name, case)]
            cols.append(f"{name} {statistics.median(v):6.1f} / {p90(v):6.1f}" if v else f"{name} n/a")
        print(f"  {case:<18} " + "   ".join(cols))
    return 0


if __name__ == "__main__":
    sys.exit(main())
