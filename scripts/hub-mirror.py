#!/usr/bin/env python3
"""A stand-in Docker Hub mirror: `berth registry serve` on loopback holding the few library images
docker-py's pull tests ask for, built locally (nothing can be pulled from Docker Hub here).

    scripts/hub-mirror.py up   [--addr 127.0.0.1:5099] [--root /tmp/hub-mirror]
    scripts/hub-mirror.py down [--root /tmp/hub-mirror]

`up` starts the registry in the background (its pid in ROOT/pid, its log in ROOT/log) and copies
into it, with skopeo, `library/busybox:{latest,buildroot-2014.02}`, `library/alpine:{3.10,latest}`
(busybox with alpine's accounts: `mkbusybox.py --alpine-compat`) and `library/hello-world:latest`
(busybox again). An engine started with `--registry-mirror http://ADDR` (dockerd or berthd) then
pulls those names as if from Docker Hub, so docker-py's pull tests can run against both engines:

    dockerd --registry-mirror http://127.0.0.1:5099 ...
    scripts/dockerpy-integration.sh --include-registry -H unix:///var/run/docker.sock \\
        api_image_test.py models_images_test.py

Run it with the checkout's venv Python (`.venv/bin/python`): the registry is this checkout's.
`down` stops the registry and removes ROOT.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
IMAGES = {  # archive flavour -> repository:tag names in the mirror
    "busybox": ["library/busybox:latest", "library/busybox:buildroot-2014.02", "library/hello-world:latest"],
    "alpine": ["library/alpine:3.10", "library/alpine:latest"],
}


def wait_port(host: str, port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the registry exited; see its log")
        try:
            socket.create_connection((host, port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the registry did not come up")


def up(addr: str, root: Path) -> None:
    if (root / "pid").exists():
        raise SystemExit(f"{root}/pid exists: run `down` first")
    if shutil.which("skopeo") is None:
        raise SystemExit("skopeo is needed (Debian: apt-get install skopeo)")
    host, _, port = addr.rpartition(":")
    (root / "data").mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "berth.registry.server", "--addr", addr, "--root", str(root / "data"),
         "--log-level", "warning"],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}, stdout=subprocess.DEVNULL,
        stderr=open(root / "log", "wb"), start_new_session=True)
    (root / "pid").write_text(str(proc.pid))
    wait_port(host, int(port), proc)
    with tempfile.TemporaryDirectory(prefix="hub-mirror-") as tmp:
        for flavour, names in IMAGES.items():
            archive = Path(tmp) / f"{flavour}.tar"
            extra = ["--alpine-compat"] if flavour == "alpine" else []
            subprocess.run([sys.executable, str(HERE / "mkbusybox.py"), *extra, "-o", str(archive)], check=True)
            for name in names:
                subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"docker-archive:{archive}",
                                f"docker://{addr}/{name}"], check=True)
                print(f"{addr}/{name}")
    print(f"mirror: http://{addr}")


def down(root: Path) -> None:
    try:
        pid = int((root / "pid").read_text())
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
    except (FileNotFoundError, ProcessLookupError, ValueError):
        pass
    shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=["up", "down"])
    ap.add_argument("--addr", default="127.0.0.1:5099")
    ap.add_argument("--root", type=Path, default=Path("/tmp/hub-mirror"))
    args = ap.parse_args()
    if args.action == "up":
        up(args.addr, args.root)
    else:
        down(args.root)


if __name__ == "__main__":
    main()
