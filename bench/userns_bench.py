"""What `--userns-remap` costs a container start: two throw-away berthds, one plain and one
remapped, driven alternately by the docker CLI (`docker run --rm busybox true`, with and without
a network), so machine load hits both alike.

    python3 bench/userns_bench.py [-n 20]      (as root; the berth venv's python)

Each daemon has its own directory under /tmp, bridge and iptables prefix, all removed at the end.
The remapped daemon creates the `dockremap` user and its /etc/subuid range if missing, as dockerd.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def start(tag: str, extra: list[str]) -> tuple[subprocess.Popen[bytes], str, str]:
    root = tempfile.mkdtemp(prefix=f"bb-{tag}-", dir="/tmp")
    os.chmod(root, 0o711)  # the remapped root must get through to its data root
    sock = f"{root}/s.sock"
    bridge = f"bu{tag}{os.getpid() % 10000}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "berth.daemon.main", "-H", f"unix://{sock}", "--data-root", f"{root}/data",
         "--exec-root", f"{root}/run", "--bridge-name", bridge, "--iptables-prefix", bridge.upper(),
         "--default-pool", f"10.{213 if tag == 'p' else 214}.250.0/24,size=28", *extra],
        stdout=open(f"{root}/log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 30
    while True:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(sock)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                raise SystemExit(f"berthd {tag} did not start: {Path(root, 'log').read_text()[-500:]}") from None
            time.sleep(0.05)
    image = subprocess.run([sys.executable, str(REPO / "scripts" / "mkbusybox.py"), "-o", "-"], capture_output=True,
                           check=True).stdout
    docker(sock, "load", input=image)
    return proc, root, bridge


def docker(sock: str, *args: str, input: bytes | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(["docker", *args], input=input, capture_output=True, check=True,
                   env=dict(os.environ, DOCKER_HOST=f"unix://{sock}"))
    return time.perf_counter() - t0


def stop(proc: subprocess.Popen[bytes], root: str, bridge: str) -> None:
    proc.terminate()
    proc.wait(10)
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f if line.split()[4].startswith(root + "/")]
    for p in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", p], capture_output=True, check=False)
    shutil.rmtree(root, ignore_errors=True)
    subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
    sys.path.insert(0, str(REPO / "src"))
    from berth.network.iptables import Firewall

    Firewall(bridge.upper()).uninstall()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=20)
    n = ap.parse_args().n
    daemons = {"plain": start("p", []), "remapped": start("r", ["--userns-remap", "default"])}
    try:
        times: dict[tuple[str, str], list[float]] = {}
        for i in range(n + 2):
            for net in ("bridge", "none"):
                for name, (_, root, _) in daemons.items():
                    t = docker(f"{root}/s.sock", "run", "--rm", "--network", net, "busybox", "true")
                    if i >= 2:  # warm-up
                        times.setdefault((name, net), []).append(t)
        print(f"docker run --rm busybox true, n={n} (median / p90 ms)")
        for (name, net), ts in sorted(times.items()):
            ts.sort()
            print(f"  {name:9} --network {net:6}  {statistics.median(ts) * 1000:6.0f} / "
                  f"{ts[int(len(ts) * 0.9) - 1] * 1000:6.0f}")
    finally:
        for proc, root, bridge in daemons.values():
            stop(proc, root, bridge)


if __name__ == "__main__":
    main()
