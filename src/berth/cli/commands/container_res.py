"""A container's resources: stats, update, pause, unpause."""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import click

from berth.cli.common import client, fail_if, for_each
from berth.cli.errors import Failure
from berth.cli.format.humanize import bytes_size, human_size
from berth.cli.format.render import header_row, render_rows
from berth.cli.format.template import Row
from berth.cli.runopts import OptionError, parse_restart, ram_in_bytes
from berth.client.errors import ClientError

STATS_TABLE = ("table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t"
               "{{.BlockIO}}\t{{.PIDs}}")
STATS_HEADERS = {"ID": "CONTAINER ID", "Container": "CONTAINER", "Name": "NAME", "CPUPerc": "CPU %",
                 "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O",
                 "BlockIO": "BLOCK I/O", "PIDs": "PIDS"}


def stats_row(ref: str, s: dict[str, Any]) -> Row:
    """One `docker stats` line, computed as the docker CLI does (memory less inactive file cache)."""
    cpu, pre = s.get("cpu_stats") or {}, s.get("precpu_stats") or {}
    cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (pre.get("cpu_usage") or {}).get("total_usage", 0)
    sys_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    ncpu = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    cpu_pct = cpu_delta / sys_delta * ncpu * 100 if sys_delta > 0 and cpu_delta > 0 else 0.0
    mem = s.get("memory_stats") or {}
    usage = mem.get("usage", 0)
    mstats = mem.get("stats") or {}
    inactive = mstats.get("total_inactive_file", mstats.get("inactive_file", 0))
    if inactive < usage:
        usage -= inactive
    limit = mem.get("limit", 0)
    rx = sum(n.get("rx_bytes", 0) for n in (s.get("networks") or {}).values())
    tx = sum(n.get("tx_bytes", 0) for n in (s.get("networks") or {}).values())
    read = write = 0
    for e in (s.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []:
        op = str(e.get("op", "")).lower()
        if op == "read":
            read += e.get("value", 0)
        elif op == "write":
            write += e.get("value", 0)
    running = not str(s.get("read", "")).startswith("0001")
    cid = s.get("id", "")
    return Row({
        "ID": cid[:12], "Container": ref, "Name": str(s.get("name", "")).lstrip("/"),
        "CPUPerc": f"{cpu_pct:.2f}%" if running else "--",
        "MemUsage": f"{bytes_size(usage)} / {bytes_size(limit)}" if running else "-- / --",
        "MemPerc": f"{(usage / limit * 100 if limit else 0):.2f}%" if running else "--",
        "NetIO": f"{human_size(rx)} / {human_size(tx)}" if running else "--",
        "BlockIO": f"{human_size(read)} / {human_size(write)}" if running else "--",
        "PIDs": str((s.get("pids_stats") or {}).get("current", 0)) if running else "--",
    }, {})


@click.command("stats", short_help="Display a live stream of container(s) resource usage statistics")
@click.option("-a", "--all", "all_", is_flag=True, help="Show all containers (default shows just running)")
@click.option("--format", "fmt", default="", help="Format output using a custom template")
@click.option("--no-stream", is_flag=True, help="Disable streaming stats and only pull the first result")
@click.option("--no-trunc", is_flag=True, help="Do not truncate output")
@click.argument("containers", nargs=-1)
def stats(all_: bool, fmt: str, no_stream: bool, no_trunc: bool, containers: tuple[str, ...]) -> None:
    """Display a live stream of container(s) resource usage statistics"""
    api = client().containers
    refs = list(containers) or [c["Id"][:12] for c in api.list(all=all_)]
    while True:
        rows, failed = _collect(refs)
        if failed:
            raise Failure(failed[0], 1)
        out = render_rows(fmt, rows, header_row(STATS_HEADERS), STATS_TABLE)
        if no_stream:
            sys.stdout.write(out)
            return
        sys.stdout.write("\x1b[2J\x1b[H" + out)
        sys.stdout.flush()
        time.sleep(0.5)  # each sample itself takes a second on the daemon side


def _collect(refs: list[str]) -> tuple[list[Row], list[str]]:
    api = client().containers

    def one(ref: str) -> Row | str:
        try:
            return stats_row(ref, api.stats(ref))
        except ClientError as exc:
            return f"Error response from daemon: {exc.message}"

    with ThreadPoolExecutor(max_workers=min(8, max(1, len(refs)))) as pool:
        results = list(pool.map(one, refs))
    return [r for r in results if isinstance(r, Row)], [r for r in results if isinstance(r, str)]


@click.command("update", short_help="Update configuration of one or more containers")
@click.option("--blkio-weight", type=int, default=0, help="Block IO (relative weight), between 10 and 1000")
@click.option("--cpu-period", type=int, default=0, help="Limit CPU CFS (Completely Fair Scheduler) period")
@click.option("--cpu-quota", type=int, default=0, help="Limit CPU CFS (Completely Fair Scheduler) quota")
@click.option("--cpu-rt-period", type=int, default=0, help="Limit the CPU real-time period in microseconds")
@click.option("--cpu-rt-runtime", type=int, default=0, help="Limit the CPU real-time runtime in microseconds")
@click.option("-c", "--cpu-shares", type=int, default=0, help="CPU shares (relative weight)")
@click.option("--cpus", default="", help="Number of CPUs")
@click.option("--cpuset-cpus", default="", help="CPUs in which to allow execution (0-3, 0,1)")
@click.option("--cpuset-mems", default="", help="MEMs in which to allow execution (0-3, 0,1)")
@click.option("-m", "--memory", default="", help="Memory limit")
@click.option("--memory-reservation", default="", help="Memory soft limit")
@click.option("--memory-swap", default="", help='Swap limit equal to memory plus swap: -1 to enable unlimited swap')
@click.option("--pids-limit", type=int, default=None, help="Tune container pids limit (set -1 for unlimited)")
@click.option("--restart", default="", help="Restart policy to apply when a container exits")
@click.argument("containers", nargs=-1, required=True)
def update(blkio_weight: int, cpu_period: int, cpu_quota: int, cpu_rt_period: int, cpu_rt_runtime: int,
           cpu_shares: int, cpus: str, cpuset_cpus: str, cpuset_mems: str, memory: str, memory_reservation: str,
           memory_swap: str, pids_limit: int | None, restart: str, containers: tuple[str, ...]) -> None:
    """Update configuration of one or more containers"""
    try:
        body: dict[str, Any] = {
            "BlkioWeight": blkio_weight, "CpuPeriod": cpu_period, "CpuQuota": cpu_quota,
            "CpuRealtimePeriod": cpu_rt_period, "CpuRealtimeRuntime": cpu_rt_runtime, "CpuShares": cpu_shares,
            "NanoCpus": int(float(cpus) * 1e9) if cpus else 0, "CpusetCpus": cpuset_cpus,
            "CpusetMems": cpuset_mems, "Memory": ram_in_bytes(memory) if memory else 0,
            "MemoryReservation": ram_in_bytes(memory_reservation) if memory_reservation else 0,
            "MemorySwap": (-1 if memory_swap == "-1" else ram_in_bytes(memory_swap)) if memory_swap else 0,
        }
        if pids_limit is not None:
            body["PidsLimit"] = pids_limit
        policy = parse_restart(restart)
    except (OptionError, ValueError) as exc:
        raise Failure(f"invalid argument: {exc}", 125) from exc
    if policy:
        body["RestartPolicy"] = policy
    if not any(v for k, v in body.items() if k != "PidsLimit") and pids_limit is None:
        raise Failure("you must provide one or more flags when using this command", 1)
    api = client().containers
    failed = for_each(containers, lambda ref: api.update(ref, body))
    fail_if(failed)


@click.command("pause", short_help="Pause all processes within one or more containers")
@click.argument("containers", nargs=-1, required=True)
def pause(containers: tuple[str, ...]) -> None:
    """Pause all processes within one or more containers"""
    fail_if(for_each(containers, client().containers.pause))


@click.command("unpause", short_help="Unpause all processes within one or more containers")
@click.argument("containers", nargs=-1, required=True)
def unpause(containers: tuple[str, ...]) -> None:
    """Unpause all processes within one or more containers"""
    fail_if(for_each(containers, client().containers.unpause))
