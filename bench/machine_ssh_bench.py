"""The ssh machine driver's costs: apply (create), a no-op apply, rm, and what `DOCKER_HOST=ssh://`
adds per docker CLI command next to the machine's unix socket.

    python3 bench/machine_ssh_bench.py [-n 10]

Needs root, openssh-server and the docker CLI. Uses the sshd-in-a-netns of
tests/root/test_machine_ssh.py; everything it makes is removed at the end. A login to the test
sshd runs root's ~/.bashrc, so its cost (pyenv init here) is part of every ssh figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.conftest import docker_cli  # noqa: E402
from tests.root.test_machine_ssh import sshd_in_netns  # noqa: E402


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, env=env, timeout=300)
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10, help="docker commands per way of connecting")
    args = ap.parse_args()
    docker = docker_cli() or "docker"
    with sshd_in_netns() as h:
        state, yml = f"{h.dir}/state", Path(h.dir, "machines.yml")
        yml.write_text(f"machines:\n  far:\n    driver: ssh\n    host: {h.address}\n    identity_file: {h.key}\n"
                       f"    install_dir: {h.install_dir}\n    engine:\n      labels: [bench=1]\n")
        wrapper = Path(h.dir, "bin")
        wrapper.mkdir()
        (wrapper / "ssh").write_text(f"#!/bin/sh\nexec /usr/bin/ssh -o BatchMode=yes -o IdentitiesOnly=yes -i {h.key} "
                                     f"-o UserKnownHostsFile={state}/far/known_hosts \"$@\"\n")
        (wrapper / "ssh").chmod(0o755)
        env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
        client_env = {**env, "PATH": f"{wrapper}:{env['PATH']}"}
        machine = [sys.executable, "-m", "berth.cli.main", "machine", "--state-dir", state, "-f", str(yml)]
        rows = []
        try:
            rows.append(("apply (create: connect, probe, configure, start, verify)", timed([*machine, "apply"], env)))
            rows.append(("apply again (no changes)", timed([*machine, "apply"], env)))
            rows.append(("ls (one ssh status check)", timed([*machine, "ls"], env)))
            sock = f"unix://{h.install_dir}/run/berth.sock"
            for label, host in (("docker version over unix://", sock),
                                ("docker version over ssh:// (dial-stdio)", f"ssh://root@{h.address}")):
                times = [timed([docker, "-H", host, "version"], client_env) for _ in range(args.n)]
                rows.append((f"{label}, median of {args.n}", statistics.median(times)))
            rows.append(("rm (containers, berthd, mounts, chains, files)", timed([*machine, "rm", "far"], env)))
        finally:
            subprocess.run([*machine, "rm", "--force", "far"], capture_output=True, env=env)
    width = max(len(r[0]) for r in rows)
    for label, seconds in rows:
        print(f"{label.ljust(width)}  {seconds * 1000:8.0f} ms")
    print(f"load average: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
