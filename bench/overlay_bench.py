"""Overlay networks between two engines (netns hosts sharing a 1-member etcd; the test's lab).

    sudo .venv/bin/python bench/overlay_bench.py [-n 10]

Measured, medians over N:
  - `docker network create -d overlay` on engine A, and until engine B's API lists the network
  - `docker run -d` on the overlay next to the same on a user-defined bridge network (alternating)
  - propagation: from `run -d` returning on B until A's VXLAN device has the container's MAC
  - ping round trip across the overlay (busybox ping, 10 packets)
Everything (containers, networks, hosts, etcd) goes at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.conftest import _UnixConnection  # noqa: E402
from tests.root.test_overlay_engine import Host, overlay_lab  # noqa: E402


def api(h: Host, path: str) -> tuple[int, bytes]:
    conn = _UnixConnection(h.sock, 10)
    conn.request("GET", path)
    resp = conn.getresponse()
    out = resp.read()
    conn.close()
    return resp.status, out


def poll(check, timeout: float = 10.0) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise TimeoutError("condition not reached")
        time.sleep(0.002)
    return time.monotonic() - start


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:7.1f} ms (min {min(values) * 1000:.1f}, max {max(values) * 1000:.1f})"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("-n", type=int, default=10)
    n = p.parse_args().n
    with overlay_lab() as lab:
        a, b = lab.a, lab.b
        create, visible = [], []
        for i in range(n):
            t = time.monotonic()
            a.docker("network", "create", "-d", "overlay", f"bn{i}")
            create.append(time.monotonic() - t)
            visible.append(poll(lambda i=i: api(b, f"/networks/bn{i}")[0] == 200))
        for i in range(n):
            a.docker("network", "rm", f"bn{i}")
        a.docker("network", "create", "-d", "overlay", "bov")
        a.docker("network", "create", "bbr")
        vx = "vx-" + a.inspect("network", "bov")["Id"][:12]
        a.docker("run", "-d", "--name", "cli", "--network", "bov", "busybox", "sleep", "1d")
        run_ov, run_br, prop = [], [], []
        for i in range(n):
            for net, out in (("bov", run_ov), ("bbr", run_br)):
                t = time.monotonic()
                a.docker("run", "-d", "--name", f"r-{net}-{i}", "--network", net, "busybox", "sleep", "1d")
                out.append(time.monotonic() - t)
            b.docker("run", "-d", "--name", f"p{i}", "--network", "bov", "busybox", "sleep", "1d")
            t_done = time.monotonic()
            mac = json.loads(api(b, f"/containers/p{i}/json")[1])["NetworkSettings"]["Networks"]["bov"]["MacAddress"]
            poll(lambda mac=mac: mac in a.ns("bridge", "fdb", "show", "dev", vx).stdout)
            prop.append(time.monotonic() - t_done)
        rtt = a.docker("exec", "cli", "ping", "-c", "10", "-i", "0.2", "p0").stdout.strip().splitlines()[-1]
        print(f"network create -d overlay (A)        {ms(create)}")
        print(f"  ... until B lists it               {ms(visible)}")
        print(f"run -d on the overlay                 {ms(run_ov)}")
        print(f"run -d on a bridge network            {ms(run_br)}")
        print(f"endpoint on B -> A's VXLAN entries    {ms(prop)}  (includes one inspect on B)")
        print(f"ping across the overlay               {rtt}")
        for h in (a, b):
            ids = h.docker("ps", "-aq").stdout.split()
            if ids:
                h.docker("rm", "-f", *ids)
        a.docker("network", "rm", "bov", "bbr")


if __name__ == "__main__":
    main()
