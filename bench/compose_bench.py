#!/usr/bin/env python3
"""`berth compose up -d` of a 10-service project against berthd, next to docker-compose v1 against dockerd.

    python3 bench/compose_bench.py [--berth unix:///run/berth/berth.sock] [--dockerd unix:///var/run/docker.sock]
                                   [--berth-cli .venv/bin/berth] [--v1 /usr/bin/docker-compose]
                                   [--services 10] [--rounds 1] [--ps-runs 10] [--json out.json]

Issue 8's figure is one run of each (`--rounds 1`, the default; more rounds give medians, the two
tools alternating round by round). Per tool: `up -d` from nothing (wall time of the command,
which returns once every container is started; berth's cache of validated files starts empty),
`ps` in the project directory (median of --ps-runs; berth's target is under 100 ms; the CPU
time the client used is shown too, as it is what wall time becomes on an idle machine), and
`down -v` (reported, not a target).

The project (`write_project`, also used by the tests) is ten busybox services on two networks
with a named volume, a published port and a few `depends_on` edges; images are local (no
registry is reachable here): busybox:latest from scripts/mkbusybox.py is loaded into an engine
that lacks it. Every project is named `cbench<run id>` and taken down at the end, also on Ctrl-C.
Stdlib only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import FrameType

REPO = Path(__file__).resolve().parent.parent


def write_project(root: Path, services: int = 10) -> None:
    """A `docker-compose.yml` both tools read: `app0..appN-1`; app0 owns the volume and a published
    port, the others sit on `front`, `back` or both, every third depends on the one before it."""
    lines = ["services:"]
    for i in range(services):
        nets = ["front"] if i % 3 == 0 else ["back"] if i % 3 == 1 else ["front", "back"]
        lines += [f"  app{i}:", "    image: busybox:latest", "    command: [sleep, '100000']",
                  "    stop_signal: SIGKILL", f"    environment: {{INDEX: '{i}'}}", f"    networks: [{', '.join(nets)}]"]
        if i == 0:
            lines += ["    volumes: [data:/data]", "    ports: ['127.0.0.1::80']"]
        if i and i % 3 == 0:
            lines += [f"    depends_on: [app{i - 1}]"]
    lines += ["networks:", "  front: {}", "  back: {}", "volumes:", "  data: {}", ""]
    (root / "docker-compose.yml").write_text("\n".join(lines))


def _env(host: str, cache: Path | None = None) -> dict[str, str]:
    env = dict(os.environ, DOCKER_HOST=host)
    if cache is not None:  # berth compose remembers validated files there: each round starts cold
        env["XDG_CACHE_HOME"] = str(cache)
    env.pop("DOCKER_CONTEXT", None)
    env.pop("COMPOSE_PROJECT_NAME", None)
    env.pop("COMPOSE_FILE", None)
    return env


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _run(cmd: list[str], host: str, cwd: Path, check: bool = True) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=_env(host, cwd / ".cache"), capture_output=True, text=True, timeout=600)
    took = time.perf_counter() - t0
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} (DOCKER_HOST={host}) failed: {p.stderr.strip()[-2000:]}")
    return took


def _answers(host: str) -> bool:
    return subprocess.run(["docker", "version"], env=_env(host), capture_output=True).returncode == 0


def _ensure_busybox(host: str) -> None:
    if subprocess.run(["docker", "image", "inspect", "busybox:latest"], env=_env(host),
                      capture_output=True).returncode == 0:
        return
    with tempfile.TemporaryDirectory() as tmp:
        tar = Path(tmp) / "busybox.tar"
        subprocess.run([sys.executable, str(REPO / "scripts" / "mkbusybox.py"), "-o", str(tar)], check=True)
        subprocess.run(["docker", "load", "-q", "-i", str(tar)], env=_env(host), check=True, capture_output=True)


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--berth", default="unix:///run/berth/berth.sock")
    p.add_argument("--dockerd", default="unix:///var/run/docker.sock")
    p.add_argument("--berth-cli", default=str(REPO / ".venv" / "bin" / "berth"))
    p.add_argument("--v1", default=shutil.which("docker-compose") or "/usr/bin/docker-compose")
    p.add_argument("--services", type=int, default=10)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--ps-runs", type=int, default=10)
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args()

    tools = {"berth": ([args.berth_cli, "compose"], args.berth),
             "v1-dockerd": ([args.v1], args.dockerd)}
    for name, (_, host) in list(tools.items()):
        if not _answers(host):
            print(f"note: {host} does not answer: {name} not measured", file=sys.stderr)
            del tools[name]
    if not tools:
        sys.exit("no engine answers")
    for _, host in tools.values():
        _ensure_busybox(host)

    run_id = uuid.uuid4().hex[:10]
    results: dict[str, dict[str, list[float]]] = {t: {"up": [], "ps": [], "ps_cpu": [], "down": []} for t in tools}
    work = Path(tempfile.mkdtemp(prefix="compose-bench-"))
    live: list[tuple[list[str], str, Path]] = []

    def cleanup(*_: object) -> None:
        for cmd, host, root in live:
            _run([*cmd, "down", "-v"], host, root, check=False)
        live.clear()
        shutil.rmtree(work, ignore_errors=True)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        cleanup()
        sys.exit(128 + signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        for rnd in range(args.rounds):
            for name, (cmd, host) in tools.items():
                root = work / f"cbench{run_id}{rnd}{name[0]}"
                root.mkdir()
                write_project(root, args.services)
                live.append((cmd, host, root))
                results[name]["up"].append(_run([*cmd, "up", "-d"], host, root))
                ps, ps_cpu = [], []
                for _ in range(args.ps_runs):
                    before = _cpu()
                    ps.append(_run([*cmd, "ps"], host, root))
                    ps_cpu.append(_cpu() - before)
                results[name]["ps"].append(statistics.median(ps))
                results[name]["ps_cpu"].append(statistics.median(ps_cpu))
                results[name]["down"].append(_run([*cmd, "down", "-v"], host, root))
                live.remove((cmd, host, root))
    finally:
        cleanup()

    med = {t: {k: statistics.median(v) for k, v in r.items()} for t, r in results.items()}
    print(f"{args.services}-service project, {args.rounds} round(s); load average {os.getloadavg()[0]:.2f}")
    print(f"{'':26}" + "".join(f"{t:>14}" for t in med) + ("       ratio" if len(med) == 2 else ""))
    rows = (("up", "up -d (s)"), ("ps", "ps (ms)"), ("ps_cpu", "ps, CPU of the client (ms)"), ("down", "down -v (s)"))
    for key, label in rows:
        scale = 1000 if key.startswith("ps") else 1
        row = f"{label:26}" + "".join(f"{med[t][key] * scale:>14.3f}" for t in med)
        if len(med) == 2:
            row += f"{med['berth'][key] / med['v1-dockerd'][key]:>12.2f}"
        print(row)
    if "berth" in med:
        print(f"targets: up -d ratio <= 0.30; berth compose ps < 100 ms "
              f"({'met' if med['berth']['ps'] < 0.1 else 'NOT met'})")
    if args.json:
        Path(args.json).write_text(json.dumps({"rounds": results, "median": med}, indent=2))


if __name__ == "__main__":
    main()
