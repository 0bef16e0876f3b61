"""The API's ResourceBackend: `stats` (from the container's cgroup) and `update` (limits and the
restart policy of a container, running or not)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from berth.common.errors import Conflict, InvalidParameter
from berth.runtime import cgroups

from . import configs
from .containers import ContainerService
from .model import ZERO_TIME, Container, now_rfc3339

STATS_INTERVAL = 1.0  # seconds between samples, as dockerd's collector

# HostConfig fields `docker update` may change; a zero or empty value means "leave as it is".
UPDATABLE = ("BlkioWeight", "CpuShares", "CpuPeriod", "CpuQuota", "CpuRealtimePeriod", "CpuRealtimeRuntime",
             "CpusetCpus", "CpusetMems", "Memory", "MemoryReservation", "MemorySwap", "KernelMemory",
             "KernelMemoryTCP", "NanoCpus", "PidsLimit", "RestartPolicy")
_UPDATABLE_KEYS = {k.lower(): k for k in UPDATABLE}


def _zero_cpu() -> dict[str, Any]:
    return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}


class ResourceAPI:
    def __init__(self, svc: ContainerService) -> None:
        self.svc = svc

    # --- stats -----------------------------------------------------------------------------
    def _sample(self, c: Container) -> dict[str, Any] | None:
        if not c.running or c.state["Restarting"]:
            return None
        sample = cgroups.container_stats(configs.cgroup_path(c))
        if sample is not None and c.host_config.get("NetworkMode") != "host":
            # docker-py and the CLI expect the key; empty until containers have interfaces
            sample["networks"] = cgroups.network_stats(int(c.state["Pid"] or 0))
        return sample

    def _shape(self, c: Container, sample: dict[str, Any] | None, pre: dict[str, Any] | None,
               preread: str) -> dict[str, Any]:
        base = {"name": "/" + c.name, "id": c.id, "num_procs": 0, "storage_stats": {}}
        if sample is None:
            return {**base, "read": ZERO_TIME, "preread": ZERO_TIME, "pids_stats": {},
                    "blkio_stats": {"io_service_bytes_recursive": None, "io_serviced_recursive": None,
                                    "io_queue_recursive": None, "io_service_time_recursive": None,
                                    "io_wait_time_recursive": None, "io_merged_recursive": None,
                                    "io_time_recursive": None, "sectors_recursive": None},
                    "cpu_stats": _zero_cpu(), "precpu_stats": _zero_cpu(), "memory_stats": {}}
        return {**base, "read": now_rfc3339(), "preread": preread, **sample,
                "precpu_stats": pre["cpu_stats"] if pre else _zero_cpu()}

    def stats(self, ref: str, stream: bool, one_shot: bool) -> AsyncIterator[dict[str, Any]]:
        """Samples a second apart; without `stream`, one (after a first sample a second before,
        so precpu_stats is filled, unless `one_shot`)."""
        c = self.svc.get(ref)

        async def gen() -> AsyncIterator[dict[str, Any]]:
            pre: dict[str, Any] | None = None
            preread = ZERO_TIME
            if not stream and not one_shot:
                pre = self._sample(c)
                if pre is not None:
                    preread = now_rfc3339()
                    await asyncio.sleep(STATS_INTERVAL)
            while True:
                sample = self._sample(c)
                doc = self._shape(c, sample, pre, preread)
                yield doc
                if not stream or (sample is None and not c.running):
                    return
                pre, preread = sample, doc["read"]
                await asyncio.sleep(STATS_INTERVAL)

        return gen()

    # --- update ----------------------------------------------------------------------------
    async def update(self, ref: str, body: Any) -> dict[str, Any]:
        c = self.svc.get(ref)
        if not isinstance(body, dict):
            raise InvalidParameter("update config must be a JSON object")
        wanted: dict[str, Any] = {}
        for key, value in body.items():
            canon = _UPDATABLE_KEYS.get(key.lower())
            if canon is None or value in (None, 0, ""):
                continue
            if canon == "RestartPolicy" and not (isinstance(value, dict) and value.get("Name")):
                continue
            wanted[canon] = value
        hc = c.host_config
        if "RestartPolicy" in wanted and hc.get("AutoRemove"):
            raise InvalidParameter("Restart policy cannot be updated because AutoRemove is enabled for "
                                   "the container")
        mem, swap = wanted.get("Memory"), hc.get("MemorySwap") or 0
        if mem and "MemorySwap" not in wanted and 0 < swap < mem:
            raise Conflict(f"Cannot update container {c.id}: Memory limit should be smaller than already "
                           "set memoryswap limit, update the memoryswap at the same time")
        if hc.get("NanoCpus") and ("CpuQuota" in wanted or "CpuPeriod" in wanted) and "NanoCpus" not in wanted:
            raise Conflict(f"Cannot update container {c.id}: Conflicting options: CPU Quota cannot be "
                           "updated as NanoCPUs has already been set")
        if "NanoCpus" in wanted and (hc.get("CpuQuota") or hc.get("CpuPeriod")) and \
                not ("CpuQuota" in wanted or "CpuPeriod" in wanted):
            raise Conflict(f"Cannot update container {c.id}: Conflicting options: Nano CPUs cannot be "
                           "updated as CPU Period/Quota has already been set")
        merged = configs.normalize_host_config({**hc, **wanted})
        async with c.busy:
            if c.running and not c.state["Restarting"] and set(wanted) - {"RestartPolicy"}:
                await self.svc.runtimes[c.runtime].update(c.id, _oci_resources(merged))
            c.host_config = merged
            self.svc._save(c)
        self.svc._event(c, "update")
        return {"Warnings": []}


def _oci_resources(hc: dict[str, Any]) -> dict[str, Any]:
    """OCI LinuxResources for `runc update`, as the spec is made at start (runtime/spec.py)."""
    out: dict[str, Any] = {}
    memory: dict[str, Any] = {}
    mem = hc.get("Memory") or 0
    if mem:
        memory["limit"] = mem
        swap = hc.get("MemorySwap") or min(2 * mem, 2**63 - 1)  # the create-time default of dockerd and berth
        memory["swap"] = swap
    if hc.get("MemoryReservation"):
        memory["reservation"] = hc["MemoryReservation"]
    if memory:
        out["memory"] = memory
    cpu: dict[str, Any] = {}
    if hc.get("CpuShares"):
        cpu["shares"] = hc["CpuShares"]
    if hc.get("NanoCpus"):
        cpu["period"] = 100000
        cpu["quota"] = hc["NanoCpus"] * 100000 // 10**9
    if hc.get("CpuQuota"):
        cpu["quota"] = hc["CpuQuota"]
    if hc.get("CpuPeriod"):
        cpu["period"] = hc["CpuPeriod"]
    if hc.get("CpusetCpus"):
        cpu["cpus"] = hc["CpusetCpus"]
    if hc.get("CpusetMems"):
        cpu["mems"] = hc["CpusetMems"]
    if hc.get("CpuRealtimePeriod"):
        cpu["realtimePeriod"] = hc["CpuRealtimePeriod"]
    if hc.get("CpuRealtimeRuntime"):
        cpu["realtimeRuntime"] = hc["CpuRealtimeRuntime"]
    if cpu:
        out["cpu"] = cpu
    if hc.get("PidsLimit"):
        out["pids"] = {"limit": hc["PidsLimit"] if hc["PidsLimit"] > 0 else -1}
    if hc.get("BlkioWeight"):
        out["blockIO"] = {"weight": hc["BlkioWeight"]}
    return out
