"""Read a container's resource usage from its cgroup, v1 (one hierarchy per controller) or v2.

The cgroup is the one runc made from the spec's `cgroupsPath` (`/berth/<id>`). The figures come
back in the Engine API's stats shapes (cpu_stats, memory_stats, pids_stats, blkio_stats), from
the kernel's files alone: nothing here writes to a cgroup.
"""

from __future__ import annotations

import os
from typing import Any

CGROUP_ROOT = "/sys/fs/cgroup"
USER_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
NS_PER_TICK = 1_000_000_000 // USER_HZ
_BLKIO_V1 = ("io_service_bytes_recursive", "io_serviced_recursive", "io_queue_recursive",
             "io_service_time_recursive", "io_wait_time_recursive", "io_merged_recursive",
             "io_time_recursive", "sectors_recursive")


def unified() -> bool:
    """Whether the host has the pure cgroup v2 layout (not v1, nor v1 with a v2 side mount)."""
    return os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers"))


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _int(path: str) -> int | None:
    text = _read(path)
    if text is None:
        return None
    text = text.strip()
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _flat_keyed(path: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (_read(path) or "").splitlines():
        key, _, val = line.partition(" ")
        try:
            out[key] = int(val.strip())
        except ValueError:
            continue
    return out


def system_cpu_usage() -> int:
    """Host CPU time in ns since boot, from /proc/stat's cpu line (as dockerd computes it)."""
    for line in (_read("/proc/stat") or "").splitlines():
        if line.startswith("cpu "):
            return sum(int(v) for v in line.split()[1:8]) * NS_PER_TICK
    return 0


def online_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except OSError:
        return os.cpu_count() or 1


def container_stats(cgroups_path: str) -> dict[str, Any] | None:
    """The container's stats, or None when its cgroup is gone (it is not running)."""
    rel = cgroups_path.strip("/")
    if unified():
        return _v2(os.path.join(CGROUP_ROOT, rel))
    return _v1(rel)


def network_stats(pid: int) -> dict[str, dict[str, int]]:
    """Per-interface counters of the network namespace `pid` is in (loopback left out, as
    dockerd reports only the container's endpoints), from /proc/PID/net/dev."""
    out: dict[str, dict[str, int]] = {}
    for line in (_read(f"/proc/{pid}/net/dev") or "").splitlines()[2:]:
        name, _, rest = line.partition(":")
        name = name.strip()
        f = rest.split()
        if name == "lo" or len(f) < 16:
            continue
        v = [int(x) for x in f]
        out[name] = {"rx_bytes": v[0], "rx_packets": v[1], "rx_errors": v[2], "rx_dropped": v[3],
                     "tx_bytes": v[8], "tx_packets": v[9], "tx_errors": v[10], "tx_dropped": v[11]}
    return out


# --- cgroup v1 --------------------------------------------------------------------------------

def _v1(rel: str) -> dict[str, Any] | None:
    def p(controller: str, name: str) -> str:
        return os.path.join(CGROUP_ROOT, controller, rel, name)

    if not os.path.isdir(os.path.join(CGROUP_ROOT, "memory", rel)) and \
            not os.path.isdir(os.path.join(CGROUP_ROOT, "cpuacct", rel)):
        return None
    percpu = [int(v) for v in (_read(p("cpuacct", "cpuacct.usage_percpu")) or "").split()]
    acct = _flat_keyed(p("cpuacct", "cpuacct.stat"))
    throttle = _flat_keyed(p("cpu", "cpu.stat"))
    cpu = {
        "cpu_usage": {"total_usage": _int(p("cpuacct", "cpuacct.usage")) or 0, "percpu_usage": percpu,
                      "usage_in_kernelmode": acct.get("system", 0) * NS_PER_TICK,
                      "usage_in_usermode": acct.get("user", 0) * NS_PER_TICK},
        "system_cpu_usage": system_cpu_usage(),
        "online_cpus": online_cpus(),
        "throttling_data": {"periods": throttle.get("nr_periods", 0),
                            "throttled_periods": throttle.get("nr_throttled", 0),
                            "throttled_time": throttle.get("throttled_time", 0)},
    }
    mstats = _flat_keyed(p("memory", "memory.stat"))
    limit = _int(p("memory", "memory.limit_in_bytes"))
    memory: dict[str, Any] = {
        "usage": _int(p("memory", "memory.usage_in_bytes")) or 0,
        "max_usage": _int(p("memory", "memory.max_usage_in_bytes")) or 0,
        "stats": mstats,
        "limit": _memory_limit(limit),
    }
    failcnt = _int(p("memory", "memory.failcnt"))
    if failcnt:
        memory["failcnt"] = failcnt
    pids: dict[str, Any] = {"current": _int(p("pids", "pids.current")) or 0}
    pid_limit = _int(p("pids", "pids.max"))
    if pid_limit:
        pids["limit"] = pid_limit
    blkio: dict[str, Any] = {k: [] for k in _BLKIO_V1}
    blkio["io_service_bytes_recursive"] = _blkio_v1(p("blkio", "blkio.throttle.io_service_bytes_recursive"))
    blkio["io_serviced_recursive"] = _blkio_v1(p("blkio", "blkio.throttle.io_serviced_recursive"))
    return {"cpu_stats": cpu, "memory_stats": memory, "pids_stats": pids, "blkio_stats": blkio}


def _blkio_v1(path: str) -> list[dict[str, Any]]:
    out = []
    for line in (_read(path) or "").splitlines():
        fields = line.split()
        if len(fields) != 3 or ":" not in fields[0]:
            continue  # the "Total N" line
        major, _, minor = fields[0].partition(":")
        try:
            out.append({"major": int(major), "minor": int(minor), "op": fields[1], "value": int(fields[2])})
        except ValueError:
            continue
    return out


def _memory_limit(limit: int | None) -> int:
    """No limit reads as a huge number in v1 and "max" in v2; dockerd then reports host memory."""
    host = _host_memory()
    if limit is None or limit >= host:
        return host
    return limit


def _host_memory() -> int:
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


# --- cgroup v2 --------------------------------------------------------------------------------

def _v2(path: str) -> dict[str, Any] | None:
    if not os.path.isdir(path):
        return None

    def p(name: str) -> str:
        return os.path.join(path, name)

    cstat = _flat_keyed(p("cpu.stat"))
    cpu = {
        "cpu_usage": {"total_usage": cstat.get("usage_usec", 0) * 1000,
                      "usage_in_kernelmode": cstat.get("system_usec", 0) * 1000,
                      "usage_in_usermode": cstat.get("user_usec", 0) * 1000},
        "system_cpu_usage": system_cpu_usage(),
        "online_cpus": online_cpus(),
        "throttling_data": {"periods": cstat.get("nr_periods", 0),
                            "throttled_periods": cstat.get("nr_throttled", 0),
                            "throttled_time": cstat.get("throttled_usec", 0) * 1000},
    }
    memory: dict[str, Any] = {
        "usage": _int(p("memory.current")) or 0,
        "stats": _flat_keyed(p("memory.stat")),
        "limit": _memory_limit(_int(p("memory.max"))),
    }
    pids: dict[str, Any] = {"current": _int(p("pids.current")) or 0}
    pid_limit = _int(p("pids.max"))
    if pid_limit:
        pids["limit"] = pid_limit
    service_bytes = []
    serviced = []
    for line in (_read(p("io.stat")) or "").splitlines():
        dev, *pairs = line.split()
        major, _, minor = dev.partition(":")
        kv = dict(pair.split("=", 1) for pair in pairs if "=" in pair)
        for op, bkey, ikey in (("read", "rbytes", "rios"), ("write", "wbytes", "wios")):
            service_bytes.append({"major": int(major), "minor": int(minor), "op": op, "value": int(kv.get(bkey, 0))})
            serviced.append({"major": int(major), "minor": int(minor), "op": op, "value": int(kv.get(ikey, 0))})
    blkio: dict[str, Any] = {k: None for k in _BLKIO_V1}
    blkio["io_service_bytes_recursive"] = service_bytes
    blkio["io_serviced_recursive"] = serviced
    return {"cpu_stats": cpu, "memory_stats": memory, "pids_stats": pids, "blkio_stats": blkio}
