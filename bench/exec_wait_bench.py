#!/usr/bin/env python3
"""What `start` pays to return only once the container's program runs, not runc's init.

berth starts a runc container by reading runc's `exec.fifo` (what `runc start` does). runc's
init closes the fifo before its execve, so at the fifo's EOF the user's program may not run
yet; berth then waits until /proc/PID/exe changes. This measures, with runc alone on a
busybox-static bundle: how often the process is still runc's init at the EOF, and how long
the wait for its exec takes (what the wait adds to `start`).

With --host it also starts containers through a berthd (or dockerd) and counts how often the
process right after `POST /start` is still runc's init (expected: never, for both).

Usage: python3 bench/exec_wait_bench.py [-n 50] [--host unix:///run/berth/berth.sock]
Needs root and runc; stdlib only (docker-py for --host).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time


def make_bundle(root: str) -> str:
    bundle = os.path.join(root, "bundle")
    bindir = os.path.join(bundle, "rootfs", "bin")
    os.makedirs(bindir)
    busybox = shutil.which("busybox") or "/bin/busybox"
    shutil.copy(busybox, os.path.join(bindir, "busybox"))
    os.symlink("busybox", os.path.join(bindir, "sleep"))
    subprocess.run(["runc", "spec", "--bundle", bundle], check=True)
    with open(os.path.join(bundle, "config.json")) as f:
        spec = json.load(f)
    spec["process"].update(terminal=False, args=["/bin/sleep", "100"])
    spec["root"]["readonly"] = True
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(spec, f)
    return bundle


def exe_identity(pid: int) -> tuple[int, int] | None:
    try:
        st = os.stat(f"/proc/{pid}/exe")
    except OSError:
        return None
    return st.st_dev, st.st_ino


def runc_runs(n: int) -> None:
    root = tempfile.mkdtemp(prefix="execwait-")
    state = os.path.join(root, "state")
    bundle = make_bundle(root)
    waits, still_init = [], 0
    try:
        for i in range(n):
            cid = f"execwait-{os.getpid()}-{i}"
            pidfile = os.path.join(root, "pid")
            subprocess.run(["runc", "--root", state, "create", "--bundle", bundle, "--pid-file", pidfile, cid],
                           check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            try:
                with open(pidfile) as f:
                    pid = int(f.read())
                init = exe_identity(pid)
                fifo = os.path.join(state, cid, "exec.fifo")
                fd = os.open(fifo, os.O_RDONLY)
                while os.read(fd, 64):
                    pass
                os.close(fd)
                os.unlink(fifo)
                t0 = time.perf_counter()
                if exe_identity(pid) == init:
                    still_init += 1
                while exe_identity(pid) == init:
                    time.sleep(0.0002)
                waits.append((time.perf_counter() - t0) * 1000)
            finally:
                subprocess.run(["runc", "--root", state, "delete", "-f", cid], check=False)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    waits.sort()
    print(f"runc alone, {n} runs: still runc's init at the fifo's EOF in {still_init}/{n}; "
          f"wait for the exec: median {statistics.median(waits):.3f} ms, "
          f"p90 {waits[int(len(waits) * 0.9)]:.3f} ms, max {waits[-1]:.3f} ms")


def engine_runs(host: str, n: int) -> None:
    import docker

    api = docker.APIClient(base_url=host, version="auto")
    made, at_init, times = [], 0, []
    try:
        for _ in range(n):
            ct = api.create_container("busybox", "sleep 100", host_config=api.create_host_config(network_mode="none"),
                                      labels={"exec-wait-bench": "1"})
            made.append(ct["Id"])
            t0 = time.perf_counter()
            api.start(ct)
            times.append((time.perf_counter() - t0) * 1000)
            pid = api.inspect_container(ct)["State"]["Pid"]
            with open(f"/proc/{pid}/comm") as f:
                at_init += f.read().strip().startswith("runc:")
    finally:
        for cid in made:
            api.remove_container(cid, force=True)
    print(f"{host}, {n} starts: still runc's init after POST /start in {at_init}/{n}; "
          f"POST /start median {statistics.median(times):.1f} ms")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=50)
    p.add_argument("--host", action="append", default=[], help="engine(s) to start containers through")
    args = p.parse_args()
    runc_runs(args.n)
    for host in args.host:
        engine_runs(host, args.n)


if __name__ == "__main__":
    main()
