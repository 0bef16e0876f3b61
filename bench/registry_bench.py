#!/usr/bin/env python3
"""Push and pull throughput: berthd -> `berth registry serve` next to dockerd -> distribution 2.8.

    python3 bench/registry_bench.py [--berth unix:///run/berth/berth.sock]
                                    [--dockerd unix:///var/run/docker.sock] [--mb 300] [-n 3]
                                    [--skip berth|dockerd] [--json out.json]

One image of three layers of random bytes (~--mb MB in all, so compression cannot help) is
written as a docker-archive and `docker load`ed into each engine. Each engine gets its own fresh
registry on a free loopback port: berthd pushes to `berth registry serve` (this checkout's, run
with the same Python), dockerd to Debian's `docker-registry`. Per round, engines alternating:

- push: first push of the image to an empty repository (a new repository name per round);
- re-push: the same push again, nothing to upload (median of 5);
- pull: `rmi` of the image, then a pull of it back.

Throughput is the image's uncompressed size over the time of the Engine API call (POST
/images/{name}/push or /images/create, read to the end of the progress stream), talked to
directly over the unix socket, so CLI start-up is not counted for either engine. A `sync` runs
before each timed push and pull, so dirty pages of the previous phase are not flushed into it. Everything made
is removed at the end (images, registries, temp dirs). Stdlib only.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DISTRIBUTION = shutil.which("docker-registry") or "/usr/bin/docker-registry"


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 600) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


@dataclass
class Engine:
    label: str
    host: str  # unix:///path
    registry: str = ""
    results: dict[str, list[float]] = field(default_factory=dict)

    @property
    def socket(self) -> str:
        return self.host.removeprefix("unix://")

    def call(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
             ) -> tuple[int, bytes]:
        conn = _Unix(self.socket)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def alive(self) -> bool:
        try:
            return self.call("GET", "/_ping")[0] == 200
        except OSError:
            return False

    def stream_ok(self, method: str, path: str) -> float:
        """Seconds for a streaming call; raises if the stream reports an error."""
        auth = base64.urlsafe_b64encode(b"{}").decode()
        t0 = time.perf_counter()
        status, out = self.call(method, path, headers={"X-Registry-Auth": auth})
        took = time.perf_counter() - t0
        if status != 200 or b'"errorDetail"' in out or b'"error"' in out:
            raise RuntimeError(f"{self.label} {method} {path}: {status} {out[-500:]!r}")
        return took

    def record(self, key: str, value: float) -> None:
        self.results.setdefault(key, []).append(value)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not come up")


def make_archive(path: Path, total_mb: int, tag: str) -> int:
    """A docker-archive of 3 layers of random data; returns the uncompressed layer bytes."""
    sizes = [total_mb * (1 << 20) // 3] * 3
    layers, diff_ids = [], []
    for i, size in enumerate(sizes):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            info = tarfile.TarInfo(f"layer{i}.bin")
            info.size = size
            tf.addfile(info, io.BytesIO(os.urandom(size)))
        data = buf.getvalue()
        layers.append(data)
        diff_ids.append("sha256:" + hashlib.sha256(data).hexdigest())
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids},
                         "history": [{"created_by": f"bench layer {i}"} for i in range(3)]}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    with tarfile.open(path, "w") as out:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))

        names = []
        for data, diff_id in zip(layers, diff_ids, strict=True):
            name = f"{diff_id.split(':')[1]}/layer.tar"
            add(name, data)
            names.append(name)
        add(config_name, config)
        add("manifest.json", json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": names}]).encode())
    return sum(len(d) for d in layers)


class Registries:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []
        self.n = 0

    def start(self, kind: str) -> str:
        """A fresh, empty registry of `kind` (berth or dockerd's distribution); stops the last one."""
        self.stop()
        self.n += 1
        return self.berth() if kind == "berth" else self.distribution()

    def berth(self) -> str:
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "berth.registry.server", "--addr", f"127.0.0.1:{port}",
                                 "--root", str(self.tmp / f"berth-registry{self.n}"), "--log-level", "warning"],
                                env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")},
                                stdout=subprocess.DEVNULL, stderr=open(self.tmp / "berth-registry.log", "wb"))
        self.procs.append(proc)
        wait_port(port, proc, "berth registry")
        return f"127.0.0.1:{port}"

    def distribution(self) -> str:
        port = free_port()
        cfg = self.tmp / "distribution.yml"
        cfg.write_text(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: "
                       f"{self.tmp / f'distribution{self.n}'}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n")
        proc = subprocess.Popen([DISTRIBUTION, "serve", str(cfg)], stdout=subprocess.DEVNULL,
                                stderr=open(self.tmp / "distribution.log", "wb"))
        self.procs.append(proc)
        wait_port(port, proc, "docker-registry")
        return f"127.0.0.1:{port}"

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()
        for d in [*self.tmp.glob("berth-registry*"), *self.tmp.glob("distribution*")]:  # stopped ones' roots
            if d.is_dir():
                shutil.rmtree(d, ignore_errors=True)


def load(engine: Engine, archive: Path) -> None:
    status, out = engine.call("POST", "/images/load?quiet=1", archive.read_bytes(),
                              {"Content-Type": "application/x-tar"})
    if status != 200 or b"error" in out.lower():
        raise RuntimeError(f"{engine.label}: load failed: {out[-300:]!r}")


def one_round(engine: Engine, src: str, mb: float) -> None:
    repo = f"{engine.registry}/bench/rand"
    engine.call("POST", f"/images/{src}/tag?repo={repo}&tag=1")
    os.sync()  # no writeback of the last phase (or the other engine's) lands in this one
    took = engine.stream_ok("POST", f"/images/{repo}/push?tag=1")
    engine.record("push MB/s", mb / took)
    again = [engine.stream_ok("POST", f"/images/{repo}/push?tag=1") * 1000 for _ in range(5)]
    engine.record("re-push ms", statistics.median(again))
    for ref in (f"{repo}:1", src):
        engine.call("DELETE", f"/images/{ref}?force=1")
    os.sync()
    took = engine.stream_ok("POST", f"/images/create?fromImage={repo}&tag=1")
    engine.record("pull MB/s", mb / took)
    engine.call("POST", f"/images/{repo}:1/tag?repo={src.rsplit(':', 1)[0]}&tag={src.rsplit(':', 1)[1]}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--berth", default="unix:///run/berth/berth.sock")
    ap.add_argument("--dockerd", default="unix:///var/run/docker.sock")
    ap.add_argument("--mb", type=int, default=300, help="image size in MB (3 layers)")
    ap.add_argument("-n", type=int, default=3, help="rounds per engine")
    ap.add_argument("--skip", choices=["berth", "dockerd"])
    ap.add_argument("--json", help="write the raw figures here")
    args = ap.parse_args(argv)

    engines = [e for e in (Engine("berth", args.berth), Engine("dockerd", args.dockerd)) if e.label != args.skip]
    engines = [e for e in engines if e.alive() or print(f"{e.label}: not answering at {e.host}, skipped")]
    if not engines:
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="registry-bench-"))
    regs = Registries(tmp)
    src = f"bench/registry-src:{os.getpid()}"
    try:
        archive = tmp / "image.tar"
        size = make_archive(archive, args.mb, src)
        mb = size / 1e6
        print(f"image: 3 layers, {mb:.0f} MB of random data")
        for e in engines:
            load(e, archive)
        archive.unlink()
        for r in range(args.n):
            for e in engines:
                e.registry = regs.start(e.label)  # empty each time: nothing to mount or skip
                one_round(e, src, mb)
                e.call("DELETE", f"/images/{e.registry}/bench/rand:1?force=1")
                print(f"round {r + 1} {e.label}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in e.results.items()),
                      flush=True)
    finally:
        for e in engines:
            if e.registry:
                e.call("DELETE", f"/images/{e.registry}/bench/rand:1?force=1")
            e.call("DELETE", f"/images/{src}?force=1")
        regs.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    keys = ["push MB/s", "re-push ms", "pull MB/s"]
    print(f"\n{'median of ' + str(args.n):<16}" + "".join(f"{e.label:>12}" for e in engines)
          + ("       ratio" if len(engines) == 2 else ""))
    for k in keys:
        vals = [statistics.median(e.results.get(k, [0.0])) for e in engines]
        ratio = f"{vals[0] / vals[1]:>11.2f}x" if len(vals) == 2 and vals[1] else ""
        print(f"{k:<16}" + "".join(f"{v:>12.1f}" for v in vals) + ratio)
    if args.json:
        Path(args.json).write_text(json.dumps({e.label: e.results for e in engines}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
