"""Resource limits checked as dockerd checks them at create and update, with its messages: a value
the kernel would refuse is a 400 here, not a runc failure (a 500) at start or update."""

from __future__ import annotations

import os
import re
from typing import Any

from berth.common.errors import InvalidParameter

MIN_MEMORY = 6 * 1024 * 1024
_MAX_CPU_SHARES = 262144  # the kernel's (cgroup v1 cpu.shares)
_CPUSET = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


def _cpuset(text: str) -> set[int] | None:
    """The numbers of a cpuset list (`0-3,5`); None if it is not one."""
    if not _CPUSET.match(text):
        return None
    out: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        first, last = int(lo), int(hi or lo)
        if last < first:
            return None
        out.update(range(first, last + 1))
    return out


def _available(kind: str) -> tuple[set[int], str]:
    """The host's CPUs or memory nodes as the root cpuset has them (and its own text)."""
    for path in (f"/sys/fs/cgroup/cpuset/cpuset.{kind}", f"/sys/fs/cgroup/cpuset.{kind}.effective"):
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        found = _cpuset(text) if text else None
        if found is not None:
            return found, text
    if kind == "cpus":
        n = os.cpu_count() or 1
        return set(range(n)), f"0-{n - 1}"
    return {0}, "0"


def _check_cpuset(value: Any, kind: str, nodes: str) -> None:
    if not value:
        return
    wanted = _cpuset(str(value))
    if wanted is None:
        raise InvalidParameter(f"Invalid value {value} for cpuset {kind}")
    have, text = _available(kind)
    if not wanted <= have:
        raise InvalidParameter(f"Requested {nodes} are not available - requested {value}, available: {text}")


_INT64 = (-(2**63), 2**63 - 1)
_INT_FIELDS = ("Memory", "MemorySwap", "MemoryReservation", "KernelMemory", "KernelMemoryTCP", "NanoCpus",
               "CpuShares", "CpuPeriod", "CpuQuota", "CpuRealtimePeriod", "CpuRealtimeRuntime", "BlkioWeight",
               "PidsLimit", "ShmSize", "OomScoreAdj", "CpuCount", "CpuPercent")


def verify_resources(hc: dict[str, Any]) -> None:
    """Raise InvalidParameter for the first limit dockerd would refuse (or the kernel would: a
    limit runc cannot write would otherwise be a 500 at start or update)."""
    for key in _INT_FIELDS:
        value = hc.get(key)
        if isinstance(value, int) and not _INT64[0] <= value <= _INT64[1]:
            raise InvalidParameter(f"HostConfig.{key} is out of range: {value}")
    ncpu = os.cpu_count() or 1
    nano = hc.get("NanoCpus") or 0
    if nano < 0 or nano > ncpu * 10**9:
        raise InvalidParameter(f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available")
    shares = hc.get("CpuShares") or 0
    if shares < 0:
        raise InvalidParameter(f"invalid CPU shares ({shares}): value must be a positive integer")
    if shares > _MAX_CPU_SHARES:
        raise InvalidParameter(f"invalid CPU shares ({shares}): the maximum allowed is {_MAX_CPU_SHARES}")
    for key in ("CpuRealtimePeriod", "CpuRealtimeRuntime", "KernelMemory", "KernelMemoryTCP"):
        if (hc.get(key) or 0) < 0:
            raise InvalidParameter(f"HostConfig.{key} must not be negative")
    period = hc.get("CpuPeriod") or 0
    if period and not 1000 <= period <= 1000000:
        raise InvalidParameter("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)")
    quota = hc.get("CpuQuota") or 0
    if 0 < quota < 1000 or quota < -1:
        raise InvalidParameter("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    _check_cpuset(hc.get("CpusetCpus"), "cpus", "CPUs")
    _check_cpuset(hc.get("CpusetMems"), "mems", "memory nodes")
    weight = hc.get("BlkioWeight") or 0
    if weight and not 10 <= weight <= 1000:
        raise InvalidParameter("Range of blkio weight is from 10 to 1000")
    memory, swap = hc.get("Memory") or 0, hc.get("MemorySwap") or 0
    reservation = hc.get("MemoryReservation") or 0
    if memory < 0 or reservation < 0 or swap < -1:
        raise InvalidParameter("invalid memory limit: a value must not be negative (except -1 for unlimited swap)")
    if memory and memory < MIN_MEMORY:
        raise InvalidParameter("Minimum memory limit allowed is 6MB")
    if memory > 0 and swap > 0 and swap < memory:
        raise InvalidParameter("Minimum memoryswap limit should be larger than memory limit, see usage")
    swappiness = hc.get("MemorySwappiness")
    if swappiness is not None and not -1 <= swappiness <= 100:
        raise InvalidParameter(f"Invalid value: {swappiness}, valid memory swappiness range is 0-100")
    if reservation and reservation < MIN_MEMORY:
        raise InvalidParameter("Minimum memory reservation allowed is 6MB")
    if memory > 0 and reservation > 0 and memory < reservation:
        raise InvalidParameter("Minimum memory limit can not be less than memory reservation limit, see usage")
