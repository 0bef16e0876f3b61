"""Resource limits refused as dockerd refuses them (pure checks, before runc ever sees them)."""

from __future__ import annotations

import os

import pytest

from berth.common.errors import InvalidParameter
from berth.daemon.configs import normalize_host_config
from berth.daemon.limits import _cpuset


@pytest.mark.parametrize("hc,message", [
    ({"CpuPeriod": 500}, "CPU cfs period can not be less than 1ms"),
    ({"CpuPeriod": 2_000_000}, "or larger than 1s"),
    ({"CpuQuota": 999}, "CPU cfs quota can not be less than 1ms"),
    ({"CpuShares": -3}, "invalid CPU shares (-3)"),
    ({"NanoCpus": -1}, "Range of CPUs is from 0.01"),
    ({"CpusetCpus": "0-x"}, "Invalid value 0-x for cpuset cpus"),
    ({"CpusetCpus": "3-1"}, "Invalid value 3-1 for cpuset cpus"),
    ({"CpusetCpus": "4096"}, "Requested CPUs are not available - requested 4096"),
    ({"CpusetMems": "77"}, "Requested memory nodes are not available"),
    ({"BlkioWeight": 5}, "Range of blkio weight is from 10 to 1000"),
    ({"Memory": 1 << 20}, "Minimum memory limit allowed is 6MB"),
    ({"Memory": 64 << 20, "MemorySwap": 32 << 20}, "Minimum memoryswap limit should be larger"),
    ({"MemorySwappiness": 101}, "valid memory swappiness range is 0-100"),
    ({"MemoryReservation": 1 << 20}, "Minimum memory reservation allowed is 6MB"),
    ({"Memory": 16 << 20, "MemoryReservation": 32 << 20}, "can not be less than memory reservation"),
    ({"Memory": -5}, "must not be negative"),
    ({"CpuShares": "1024"}, "HostConfig.CpuShares must be an integer"),
    ({"CpusetCpus": 3}, "HostConfig.CpusetCpus must be a string"),
])
def test_refused(hc: dict, message: str) -> None:
    with pytest.raises(InvalidParameter, match=message.replace("(", r"\(").replace(")", r"\)")):
        normalize_host_config(hc)


def test_accepted() -> None:
    last = (os.cpu_count() or 1) - 1
    hc = normalize_host_config({"CpuPeriod": 100000, "CpuQuota": -1, "CpuShares": 512, "CpusetCpus": f"0-{last}",
                                "CpusetMems": "0", "BlkioWeight": 10, "Memory": 64 << 20, "MemorySwap": -1,
                                "MemorySwappiness": -1, "MemoryReservation": 32 << 20})
    assert hc["CpusetCpus"] == f"0-{last}" and hc["MemorySwappiness"] is None
    assert normalize_host_config({"NanoCpus": 10**9})["NanoCpus"] == 10**9


def test_cpuset_lists() -> None:
    assert _cpuset("0-2,5") == {0, 1, 2, 5}
    assert _cpuset("0,,1") is None and _cpuset("") is None and _cpuset("2-1") is None


@pytest.mark.parametrize("hc,message", [
    ({"CpuShares": 262145}, "the maximum allowed is 262144"),
    ({"CpuRealtimeRuntime": -5}, "HostConfig.CpuRealtimeRuntime must not be negative"),
    ({"Memory": 2**70}, "HostConfig.Memory is out of range"),
])
def test_refused_before_the_kernel_would(hc: dict, message: str) -> None:
    with pytest.raises(InvalidParameter, match=message):
        normalize_host_config(hc)
