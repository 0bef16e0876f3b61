#!/usr/bin/env python3
"""Side-by-side benchmark of berth and dockerd, driven through the real docker CLI.

Both engines are addressed as DOCKER_HOST URLs and exercised with the same ``docker`` binary, so
the figures include exactly what a user pays: CLI start, API round trips and the engine's work.
An engine that is not reachable is shown as "n/a" rather than failing the whole run.

Measured per engine:
  * ``docker run --rm busybox true`` (median, p90 over N runs), also with ``--network none``
  * 30 sequential ``docker run -d busybox sleep 1000`` (total seconds), then ``docker rm -f`` of them
  * ``docker ps`` while those 30 run (median of 10)
  * the daemon's memory (PSS summed over the daemon and its helper processes), idle and with 30
  * the CLI's own ``--version`` time (``berth --version`` for berth, ``docker --version`` for dockerd)

Every container made carries a per-run label and is removed at the end, also on Ctrl-C.
Stdlib only, so it runs with any python3 >= 3.11 and needs nothing installed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MKBUSYBOX = REPO / "scripts" / "mkbusybox.py"

# Helper processes whose memory belongs to an engine, by /proc/PID/comm (which the kernel
# truncates to 15 characters: "containerd-shim-runc-v2" reads as "containerd-shim").
DOCKERD_HELPERS = ("containerd", "containerd-shim", "containerd-shim-runc-v2", "docker-proxy")
BERTH_HELPERS = ("conmon",)


@dataclass
class Engine:
    name: str
    host: str
    helpers: tuple[str, ...]
    # Helpers whose command line must contain one of these words: conmon is shared with podman,
    # and only the conmons berth started (their paths name berth) are berth's.
    helper_filter: tuple[str, ...] = ()
    version_cmd: list[str] | None = None
    server_version: str | None = None
    absent_reason: str = ""
    results: dict[str, float | None] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def present(self) -> bool:
        return self.server_version is not None

    def socket_path(self) -> str | None:
        if self.host.startswith("unix://"):
            return self.host[len("unix://") :]
        return None


# ---------------------------------------------------------------------------------------------
# process and memory accounting


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _pids() -> Iterator[int]:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            yield int(entry)


def listening_socket_owner(path: str) -> int | None:
    """PID of the process holding the listening unix socket bound at ``path``.

    Found through the socket's inode rather than a process name, since berthd may run as
    ``python3 -m ...`` and several dockerds could be running.
    """
    wanted = {path, os.path.realpath(path)}
    inodes: set[str] = set()
    for line in _read("/proc/net/unix").splitlines()[1:]:
        parts = line.split()
        # Num RefCount Protocol Flags Type St Inode [Path]; flag 0x10000 is __SO_ACCEPTCON.
        if len(parts) >= 8 and parts[7] in wanted and int(parts[3], 16) & 0x10000:
            inodes.add(f"socket:[{parts[6]}]")
    if not inodes:
        return None
    for pid in _pids():
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"{fd_dir}/{fd}") in inodes:
                    return pid
            except OSError:
                continue
    return None


def _ppid(pid: int) -> int | None:
    stat = _read(f"/proc/{pid}/stat")
    # The comm field may contain spaces and parentheses: split after the last ')'.
    rest = stat.rpartition(")")[2].split()
    return int(rest[1]) if len(rest) > 1 else None


def engine_pids(engine: Engine) -> set[int]:
    """The daemon, its descendants, and helper processes (shims/conmons reparent to init)."""
    sock = engine.socket_path()
    daemon = listening_socket_owner(sock) if sock else None
    if daemon is None:
        return set()
    parents = {pid: _ppid(pid) for pid in _pids()}
    members = {daemon}
    changed = True
    while changed:
        changed = False
        for pid, ppid in parents.items():
            if ppid in members and pid not in members:
                members.add(pid)
                changed = True
    for pid in parents:
        if _read(f"/proc/{pid}/comm").strip() in engine.helpers:
            cmdline = _read(f"/proc/{pid}/cmdline").replace("\0", " ")
            if not engine.helper_filter or any(w in cmdline for w in engine.helper_filter):
                members.add(pid)
    return members


def pss_kib(pids: set[int]) -> tuple[int, int]:
    """(total PSS in KiB, number of processes counted); PSS splits shared pages fairly."""
    total = counted = 0
    for pid in pids:
        for line in _read(f"/proc/{pid}/smaps_rollup").splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1])
                counted += 1
                break
    return total, counted


# ---------------------------------------------------------------------------------------------
# driving the CLI


class Runner:
    def __init__(self, docker: str, label: str, verbose: bool) -> None:
        self.docker = docker
        self.label = label
        self.verbose = verbose
        self.base_env = dict(os.environ)
        # The CLI prints "What's next" hints and update notices on some commands; they cost time
        # and are not the engine's.
        self.base_env["DOCKER_CLI_HINTS"] = "false"
        self.base_env.pop("DOCKER_CONTEXT", None)

    def run(
        self, engine: Engine, args: list[str], timeout: float = 120, expect_ok: bool = True
    ) -> tuple[float, int, str]:
        """Run ``docker ARGS`` against ``engine``; return (seconds, exit code, stdout).

        A failure is recorded in ``engine.errors`` (and shown in the report) unless the caller
        only probes (``expect_ok=False``): a failed run would otherwise just vanish from the samples.
        """
        env = dict(self.base_env, DOCKER_HOST=engine.host)
        start = time.perf_counter()
        try:
            proc = subprocess.run(
                [self.docker, *args], env=env, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            if expect_ok:
                engine.errors.append(f"docker {' '.join(args)}: timed out after {timeout} s")
            return time.perf_counter() - start, -1, ""
        elapsed = time.perf_counter() - start
        if proc.returncode != 0 and expect_ok:
            if self.verbose:
                print(
                    f"  [{engine.name}] docker {' '.join(args)} -> {proc.returncode}: {proc.stderr.strip()}"
                )
            engine.errors.append(f"docker {' '.join(args)}: {proc.stderr.strip()[:300]}")
        return elapsed, proc.returncode, proc.stdout

    def probe(self, engine: Engine) -> None:
        sock = engine.socket_path()
        if sock is not None and not os.path.exists(sock):
            engine.absent_reason = f"{sock} does not exist"
            return
        if sock is not None:
            # A stale socket file makes the CLI wait for its own timeout; a connect fails at once.
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(2)
                    s.connect(sock)
            except OSError as exc:
                engine.absent_reason = f"cannot connect to {sock}: {exc}"
                return
        _, rc, out = self.run(engine, ["version", "--format", "{{.Server.Version}}"], 20, expect_ok=False)
        if rc != 0 or not out.strip():
            engine.absent_reason = "docker version failed"
            return
        engine.server_version = out.strip()

    def containers(self, engine: Engine) -> list[str]:
        _, rc, out = self.run(engine, ["ps", "-aq", "--no-trunc", "--filter", f"label={self.label}"])
        return out.split() if rc == 0 else []

    def cleanup(self, engine: Engine) -> int:
        ids = self.containers(engine)
        if ids:
            self.run(engine, ["rm", "-f", *ids], timeout=300)
        return len(ids)


# ---------------------------------------------------------------------------------------------
# statistics and presentation


def p90(values: list[float]) -> float:
    # Nearest-rank percentile: with 20 samples this is the 18th, an actual observation.
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "ms":
        return f"{value * 1000:.1f} ms"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "MiB":
        return f"{value / 1024:.1f} MiB"
    return f"{value:g}"


METRICS: list[tuple[str, str, str]] = [
    # (key, label, unit)
    ("run_rm_median", "run --rm true: median", "ms"),
    ("run_rm_p90", "run --rm true: p90", "ms"),
    ("run_rm_nonet_median", "run --rm --network none true: median", "ms"),
    ("run_rm_nonet_p90", "run --rm --network none true: p90", "ms"),
    ("run_d_total", "run -d sleep x{n_detached}: total", "s"),
    ("ps_median", "ps with {n_detached} running: median", "ms"),
    ("rm_f_total", "rm -f of the {n_detached}: total", "s"),
    ("pss_idle_kib", "daemon PSS idle", "MiB"),
    ("pss_busy_kib", "daemon PSS with {n_detached} running", "MiB"),
    ("cli_version_median", "CLI --version (berth / docker)", "ms"),
]


def print_table(berth: Engine, dockerd: Engine, n_detached: int) -> None:
    rows: list[tuple[str, str, str, str]] = []
    for key, label, unit in METRICS:
        b = berth.results.get(key)
        d = dockerd.results.get(key)
        ratio = f"{b / d:.2f}" if b is not None and d is not None and d > 0 else "n/a"
        rows.append((label.format(n_detached=n_detached), fmt(b, unit), fmt(d, unit), ratio))
    header = (
        "metric",
        f"berth ({berth.server_version or 'absent'})",
        f"dockerd ({dockerd.server_version or 'absent'})",
        "berth/dockerd",
    )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    line = "  ".join("-" * w for w in widths)
    print(line)
    print(
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths, strict=True))
        )
    )
    print(line)
    for row in rows:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    print(line)
    for engine in (berth, dockerd):
        if not engine.present:
            print(f"{engine.name}: n/a ({engine.absent_reason})")
        elif engine.errors:
            print(f"{engine.name}: {len(engine.errors)} failed commands, first: {engine.errors[0]}")


# ---------------------------------------------------------------------------------------------
# the benchmark


def ensure_image(runner: Runner, engine: Engine, image: str) -> bool:
    _, rc, _ = runner.run(engine, ["image", "inspect", "--format", "{{.Id}}", image], expect_ok=False)
    if rc == 0:
        return True
    # No registry is reachable here: build the image locally and load it.
    if image.partition(":")[0] != "busybox" or not MKBUSYBOX.exists():
        engine.errors.append(f"image {image} missing and cannot be built here")
        return False
    print(f"[{engine.name}] {image} missing: loading one built by {MKBUSYBOX.name}")
    tar = subprocess.run(
        [sys.executable, str(MKBUSYBOX), "-t", image, "-o", "-"], check=True, capture_output=True
    ).stdout
    env = dict(runner.base_env, DOCKER_HOST=engine.host)
    load = subprocess.run([runner.docker, "load"], input=tar, env=env, capture_output=True)
    if load.returncode != 0:
        engine.errors.append(f"docker load: {load.stderr.decode(errors='replace').strip()}")
        return False
    return True


def interleaved(
    engines: list[Engine], n: int, warmup: int, args: list[str], runner: Runner
) -> dict[str, list[float]]:
    """Run the same command n times per engine, alternating engines each round.

    Alternating spreads any drift of the machine (other jobs, page cache, thermal) over both
    engines instead of charging it to whichever ran second.
    """
    samples: dict[str, list[float]] = {e.name: [] for e in engines}
    for i in range(warmup + n):
        for engine in engines:
            secs, rc, _ = runner.run(engine, args)
            if i >= warmup and rc == 0:
                samples[engine.name].append(secs)
    return samples


def bench_latency(
    engines: list[Engine], runner: Runner, image: str, n: int, warmup: int, key: str, extra: list[str]
) -> None:
    args = ["run", "--rm", "--label", runner.label, *extra, image, "true"]
    samples = interleaved(engines, n, warmup, args, runner)
    for engine in engines:
        values = samples[engine.name]
        engine.results[f"{key}_median"] = statistics.median(values) if values else None
        engine.results[f"{key}_p90"] = p90(values) if values else None
        engine.results[f"{key}_n"] = len(values)


def bench_detached(engine: Engine, runner: Runner, image: str, n_detached: int, n_ps: int) -> None:
    prefix = f"bench-{runner.label.rpartition('=')[2][:8]}"
    start = time.perf_counter()
    ok = 0
    for i in range(n_detached):
        _, rc, _ = runner.run(
            engine, ["run", "-d", "--label", runner.label, "--name", f"{prefix}-{i}", image, "sleep", "1000"]
        )
        ok += rc == 0
    engine.results["run_d_total"] = time.perf_counter() - start if ok == n_detached else None
    engine.results["run_d_ok"] = ok

    ps_times = [runner.run(engine, ["ps"])[0] for _ in range(n_ps)]
    engine.results["ps_median"] = statistics.median(ps_times)

    # Let the shims/conmons finish starting up before sampling memory.
    time.sleep(1)
    pids = engine_pids(engine)
    pss, counted = pss_kib(pids)
    engine.results["pss_busy_kib"] = float(pss) if counted else None
    engine.results["pss_busy_processes"] = counted

    start = time.perf_counter()
    ids = runner.containers(engine)
    if ids:
        runner.run(engine, ["rm", "-f", *ids], timeout=300)
    engine.results["rm_f_total"] = time.perf_counter() - start if ids else None


def bench_cli_version(engine: Engine, n: int) -> None:
    if not engine.version_cmd:
        return
    times: list[float] = []
    for _ in range(n + 1):
        start = time.perf_counter()
        rc = subprocess.run(engine.version_cmd, capture_output=True).returncode
        if rc == 0:
            times.append(time.perf_counter() - start)
    # The first run warms the page cache for the interpreter/binary; drop it.
    engine.results["cli_version_median"] = statistics.median(times[1:]) if len(times) > 1 else None


def step(what: str) -> None:
    print(f"-- {what}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--berth", default="unix:///run/berth/berth.sock", help="berth's DOCKER_HOST URL")
    ap.add_argument("--dockerd", default="unix:///var/run/docker.sock", help="dockerd's DOCKER_HOST URL")
    ap.add_argument(
        "--skip", action="append", default=[], choices=["berth", "dockerd"], help="leave out an engine"
    )
    ap.add_argument("--docker", default=shutil.which("docker") or "docker", help="docker CLI binary")
    ap.add_argument("--berth-cli", default=shutil.which("berth"), help="berth CLI for the --version timing")
    ap.add_argument("--image", default="busybox:latest")
    ap.add_argument("-n", "--runs", type=int, default=20, help="samples for the run --rm latencies")
    ap.add_argument("--warmup", type=int, default=2, help="unmeasured runs before the latency series")
    ap.add_argument("--detached", type=int, default=30, help="containers started with run -d")
    ap.add_argument("--ps-runs", type=int, default=10)
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    ap.add_argument("-v", "--verbose", action="store_true", help="print failing commands as they happen")
    args = ap.parse_args(argv)

    label = f"berth-bench={uuid.uuid4().hex}"
    runner = Runner(args.docker, label, args.verbose)
    berth = Engine("berth", args.berth, BERTH_HELPERS, helper_filter=("berth",))
    dockerd = Engine("dockerd", args.dockerd, DOCKERD_HELPERS)
    if args.berth_cli:
        berth.version_cmd = [args.berth_cli, "--version"]
    dockerd.version_cmd = [args.docker, "--version"]

    for engine in (berth, dockerd):
        if engine.name in args.skip:
            engine.absent_reason = "skipped"
        else:
            runner.probe(engine)
        state = engine.server_version or f"n/a ({engine.absent_reason})"
        print(f"{engine.name}: {engine.host}: {state}")

    live = [e for e in (berth, dockerd) if e.present and ensure_image(runner, e, args.image)]
    for engine in (berth, dockerd):
        if engine.present and engine not in live:
            engine.absent_reason = "; ".join(engine.errors) or "image unavailable"
            engine.server_version = None

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # SIGTERM (e.g. from a CI timeout) must also reach the cleanup in the finally below.
    signal.signal(signal.SIGTERM, on_signal)
    try:
        # Idle memory first, before this run has started any container on either engine.
        for engine in live:
            pids = engine_pids(engine)
            pss, _ = pss_kib(pids)
            engine.results["pss_idle_kib"] = float(pss) if pids else None
            engine.results["pss_idle_processes"] = len(pids)
        step(
            f"run --rm x{args.runs} (+{args.warmup} warm-up) on {', '.join(e.name for e in live) or 'nothing'}"
        )
        bench_latency(live, runner, args.image, args.runs, args.warmup, "run_rm", [])
        step("run --rm --network none")
        bench_latency(live, runner, args.image, args.runs, args.warmup, "run_rm_nonet", ["--network", "none"])
        for engine in live:
            step(f"{engine.name}: {args.detached} x run -d, ps x{args.ps_runs}, memory, rm -f")
            bench_detached(engine, runner, args.image, args.detached, args.ps_runs)
        step("CLI --version")
        # The CLI needs no daemon, so it is timed even when the engine is down, unless skipped.
        for engine in (berth, dockerd):
            if engine.name not in args.skip:
                bench_cli_version(engine, 10)
    except KeyboardInterrupt:
        print("interrupted: cleaning up", file=sys.stderr)
    finally:
        for engine in live:
            left = runner.cleanup(engine)
            if left:
                print(f"[{engine.name}] removed {left} leftover bench containers")

    print()
    print_table(berth, dockerd, args.detached)
    if args.json:
        doc: dict[str, Any] = {
            "label": label,
            "image": args.image,
            "runs": args.runs,
            "detached": args.detached,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "engines": {
                e.name: {
                    "host": e.host,
                    "version": e.server_version,
                    "absent_reason": e.absent_reason or None,
                    "results": e.results,
                    "errors": e.errors,
                }
                for e in (berth, dockerd)
            },
        }
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
