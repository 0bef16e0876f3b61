"""stats and update through docker-py and the docker CLI, checked against the cgroup's own files."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import docker
import docker.errors
import pytest

from ..conftest import Daemon
from .test_docker_cli import DOCKER
from .test_docker_cli import docker as docker_cli

MEMORY_CG = "/sys/fs/cgroup/memory/berth"
V1 = os.path.isdir(MEMORY_CG)


def _cg(cid: str, name: str) -> int:
    with open(os.path.join(MEMORY_CG, cid, name)) as f:
        return int(f.read())


def _inactive_file(cid: str) -> int:
    with open(os.path.join(MEMORY_CG, cid, "memory.stat")) as f:
        for line in f:
            k, v = line.split()
            if k == "total_inactive_file":
                return int(v)
    return 0


@pytest.fixture
def ctr(dockerpy: docker.DockerClient) -> Iterator[docker.models.containers.Container]:
    c = dockerpy.containers.run("busybox", ["sh", "-c", "dd if=/dev/zero of=/dev/shm/fill bs=1M count=40 "
                                                        "2>/dev/null; sleep 1000"],
                                detach=True, name=f"res-{uuid.uuid4().hex[:8]}", mem_limit="256m")
    for _ in range(100):
        if c.exec_run(["test", "-f", "/dev/shm/fill"]).exit_code == 0:
            break
    yield c
    c.remove(force=True)


@pytest.mark.skipif(not V1, reason="cgroup v1 host layout")
def test_stats_one_shot_and_two_samples(dockerpy: docker.DockerClient, ctr) -> None:  # type: ignore[no-untyped-def]
    s = dockerpy.api.stats(ctr.id, stream=False)
    assert s["id"] == ctr.id and s["name"] == "/" + ctr.name
    assert s["precpu_stats"]["cpu_usage"]["total_usage"] > 0  # a first sample a second before
    assert s["cpu_stats"]["system_cpu_usage"] > s["precpu_stats"]["system_cpu_usage"]
    mem = s["memory_stats"]
    assert mem["limit"] == 256 * 1024 * 1024
    assert abs(mem["usage"] - _cg(ctr.id, "memory.usage_in_bytes")) <= 0.1 * mem["usage"]
    assert mem["usage"] > 40 * 1024 * 1024 and "total_inactive_file" in mem["stats"]
    assert s["pids_stats"]["current"] >= 1
    assert isinstance(s["blkio_stats"]["io_service_bytes_recursive"], list)
    one = dockerpy.api.stats(ctr.id, stream=False, one_shot=True)
    assert one["precpu_stats"]["cpu_usage"]["total_usage"] == 0 and one["preread"].startswith("0001")


def test_stats_stream(dockerpy: docker.DockerClient, ctr) -> None:  # type: ignore[no-untyped-def]
    stream = ctr.stats(decode=True, stream=True)
    first, second = next(stream), next(stream)
    stream.close()
    assert second["precpu_stats"]["cpu_usage"] == first["cpu_stats"]["cpu_usage"]
    assert second["preread"] == first["read"]


def test_stats_of_stopped_container(dockerpy: docker.DockerClient) -> None:
    c = dockerpy.containers.create("busybox", ["true"])
    try:
        s = c.stats(stream=False)
        assert s["read"].startswith("0001") and s["memory_stats"] == {}
    finally:
        c.remove()
    with pytest.raises(docker.errors.NotFound):
        dockerpy.api.stats("no-such-container", stream=False)


@pytest.mark.skipif(DOCKER is None or not V1, reason="docker CLI and cgroup v1")
def test_docker_stats_no_stream_memory_matches_cgroup(berthd: Daemon, ctr) -> None:  # type: ignore[no-untyped-def]
    out = docker_cli(berthd, "stats", "--no-stream", "--format", "{{.MemUsage}}|{{.PIDs}}|{{.Name}}", ctr.id)
    usage_text, pids, name = out.stdout.strip().split("|")
    shown = _parse_size(usage_text.split(" / ")[0])
    real = _cg(ctr.id, "memory.usage_in_bytes") - _inactive_file(ctr.id)
    assert abs(shown - real) <= 0.1 * real, (usage_text, real)
    assert usage_text.split(" / ")[1] == "256MiB" and int(pids) >= 1 and name == ctr.name
    table = docker_cli(berthd, "stats", "--no-stream", ctr.id).stdout.splitlines()
    assert table[0].split() == ["CONTAINER", "ID", "NAME", "CPU", "%", "MEM", "USAGE", "/", "LIMIT", "MEM", "%",
                                "NET", "I/O", "BLOCK", "I/O", "PIDS"]


def _parse_size(text: str) -> float:
    units = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * units[unit]
    raise ValueError(text)


@pytest.mark.skipif(not V1, reason="cgroup v1 host layout")
def test_update_resources_and_restart_policy(dockerpy: docker.DockerClient, ctr) -> None:  # type: ignore[no-untyped-def]
    assert dockerpy.api.update_container(ctr.id, mem_limit="128m", memswap_limit="256m",
                                         restart_policy={"Name": "on-failure", "MaximumRetryCount": 3},
                                         cpu_shares=512) == {"Warnings": []}
    hc = dockerpy.api.inspect_container(ctr.id)["HostConfig"]
    assert (hc["Memory"], hc["MemorySwap"], hc["CpuShares"]) == (128 * 1024**2, 256 * 1024**2, 512)
    assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert _cg(ctr.id, "memory.limit_in_bytes") == 128 * 1024**2
    with open(f"/sys/fs/cgroup/cpu/berth/{ctr.id}/cpu.shares") as f:
        assert int(f.read()) == 512
    # docker's rule: a memory limit above the swap limit already set needs a new swap limit
    with pytest.raises(docker.errors.APIError) as e:
        dockerpy.api.update_container(ctr.id, mem_limit="512m")
    assert e.value.status_code == 409 and "memoryswap" in str(e.value)


def test_update_stopped_container_applies_at_start(dockerpy: docker.DockerClient) -> None:
    c = dockerpy.containers.create("busybox", ["cat", "/sys/fs/cgroup/pids/pids.max"])
    try:
        resp = dockerpy.api.post(dockerpy.api._url("/containers/{0}/update", c.id), json={"PidsLimit": 42})
        assert resp.status_code == 200 and resp.json() == {"Warnings": []}
        assert dockerpy.api.inspect_container(c.id)["HostConfig"]["PidsLimit"] == 42
        with pytest.raises(docker.errors.APIError):
            dockerpy.api.update_container(c.id, mem_limit="1k")
        c.start()
        assert c.wait()["StatusCode"] == 0
        assert c.logs() == b"42\n"
    finally:
        c.remove(force=True)


@pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")
def test_docker_update_restart_policy(berthd: Daemon) -> None:
    name = f"res-cli-{uuid.uuid4().hex[:8]}"
    docker_cli(berthd, "run", "-d", "--name", name, "busybox", "sleep", "1000")
    try:
        assert docker_cli(berthd, "update", "--restart", "always", "--memory", "64m", name).stdout.strip() == name
        out = docker_cli(berthd, "inspect", "-f", "{{.HostConfig.RestartPolicy.Name}} {{.HostConfig.Memory}}", name)
        assert out.stdout.split() == ["always", str(64 * 1024**2)]
    finally:
        docker_cli(berthd, "rm", "-f", name)
