"""build_spec and friends against what dockerd 20.10.24 writes into config.json (captured here)."""

from __future__ import annotations

import resource
from typing import Any

import pytest

from berth.common.errors import InvalidParameter
from berth.runtime.capabilities import ALL_CAPS, DEFAULT_CAPS, capabilities
from berth.runtime.spec import DEFAULT_PATH, SpecOptions, build_spec, container_env, resolve_args

HOST_CAPS = frozenset(ALL_CAPS) - {"CAP_SYS_RESOURCE"}  # this test fleet's bounding set
CID = "d7be34532b90e7952339e878bf9ae4ac7691e47815ba66772e5a3cc310b317a9"

# dockerd 20.10.24, `docker run busybox sleep 300`: mounts before the /etc binds, device rules.
DOCKER_MOUNTS = [
    {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
    {
        "destination": "/dev",
        "type": "tmpfs",
        "source": "tmpfs",
        "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
    },
    {
        "destination": "/dev/pts",
        "type": "devpts",
        "source": "devpts",
        "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
    },
    {
        "destination": "/sys",
        "type": "sysfs",
        "source": "sysfs",
        "options": ["nosuid", "noexec", "nodev", "ro"],
    },
    {
        "destination": "/sys/fs/cgroup",
        "type": "cgroup",
        "source": "cgroup",
        "options": ["ro", "nosuid", "noexec", "nodev"],
    },
    {
        "destination": "/dev/mqueue",
        "type": "mqueue",
        "source": "mqueue",
        "options": ["nosuid", "noexec", "nodev"],
    },
    {
        "destination": "/dev/shm",
        "type": "tmpfs",
        "source": "shm",
        "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"],
    },
]
DOCKER_DEVICE_RULES = (
    [{"allow": False, "access": "rwm"}]
    + [
        {"allow": True, "type": "c", "major": ma, "minor": mi, "access": "rwm"}
        for ma, mi in ((1, 5), (1, 3), (1, 9), (1, 8), (5, 0), (5, 1))
    ]
    + [{"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"}]
)
DOCKER_MASKED = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
]
DOCKER_READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def opts(**kw: Any) -> SpecOptions:
    base: dict[str, Any] = {
        "container_id": CID,
        "rootfs": "/rootfs",
        "args": ["sleep", "300"],
        "host_caps": HOST_CAPS,
    }
    base.update(kw)
    return SpecOptions(**base)


# --- ENTRYPOINT / CMD -----------------------------------------------------------------------

EXEC_EP = ["exec_entry", "p1_entry"]
SHELL_EP = ["/bin/sh", "-c", "exec_entry p1_entry"]
EXEC_CMD = ["exec_cmd", "p1_cmd"]
SHELL_CMD = ["/bin/sh", "-c", "exec_cmd p1_cmd"]


@pytest.mark.parametrize(
    ("image_ep", "image_cmd", "expected"),
    [
        # docker docs, "Understand how CMD and ENTRYPOINT interact": rows = image CMD, cols = ENTRYPOINT
        (None, EXEC_CMD, ["exec_cmd", "p1_cmd"]),
        (EXEC_EP, EXEC_CMD, ["exec_entry", "p1_entry", "exec_cmd", "p1_cmd"]),
        (SHELL_EP, EXEC_CMD, ["/bin/sh", "-c", "exec_entry p1_entry", "exec_cmd", "p1_cmd"]),
        (None, ["p1_cmd", "p2_cmd"], ["p1_cmd", "p2_cmd"]),
        (EXEC_EP, ["p1_cmd", "p2_cmd"], ["exec_entry", "p1_entry", "p1_cmd", "p2_cmd"]),
        (SHELL_EP, ["p1_cmd", "p2_cmd"], ["/bin/sh", "-c", "exec_entry p1_entry", "p1_cmd", "p2_cmd"]),
        (None, SHELL_CMD, ["/bin/sh", "-c", "exec_cmd p1_cmd"]),
        (EXEC_EP, SHELL_CMD, ["exec_entry", "p1_entry", "/bin/sh", "-c", "exec_cmd p1_cmd"]),
        (SHELL_EP, SHELL_CMD, ["/bin/sh", "-c", "exec_entry p1_entry", "/bin/sh", "-c", "exec_cmd p1_cmd"]),
        (EXEC_EP, None, ["exec_entry", "p1_entry"]),
    ],
)
def test_docs_table_image_only(
    image_ep: list[str] | None, image_cmd: list[str] | None, expected: list[str]
) -> None:
    assert resolve_args(image_ep, image_cmd, None, None, False) == expected


@pytest.mark.parametrize(
    ("entrypoint", "cmd", "entrypoint_set", "expected"),
    [  # image: ENTRYPOINT ["echo","ep"] CMD ["c1","c2"]; results observed with dockerd 20.10
        (None, ["x", "y"], False, ["echo", "ep", "x", "y"]),  # run args replace CMD
        (["ls"], None, True, ["ls"]),  # --entrypoint resets the image CMD
        (["ls"], ["-a"], True, ["ls", "-a"]),
        ([""], ["ls", "-l"], True, ["ls", "-l"]),  # --entrypoint "" clears the entrypoint
        ([], None, True, ["c1", "c2"]),  # API "Entrypoint": [] keeps the image CMD
        (None, [], False, ["echo", "ep", "c1", "c2"]),
    ],
)
def test_create_overrides(
    entrypoint: list[str] | None, cmd: list[str] | None, entrypoint_set: bool, expected: list[str]
) -> None:
    assert resolve_args(["echo", "ep"], ["c1", "c2"], entrypoint, cmd, entrypoint_set) == expected


@pytest.mark.parametrize(
    ("image_ep", "image_cmd", "entrypoint", "cmd", "entrypoint_set"),
    [
        (["echo", "ep"], ["c1"], [""], None, True),  # `--entrypoint= image` with no command
        (None, ["sh"], [""], None, True),
        (None, None, None, None, False),
        ([], [], [], [], True),
    ],
)
def test_no_command(image_ep: Any, image_cmd: Any, entrypoint: Any, cmd: Any, entrypoint_set: bool) -> None:
    with pytest.raises(InvalidParameter, match="^No command specified$"):
        resolve_args(image_ep, image_cmd, entrypoint, cmd, entrypoint_set)


# --- environment ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image_env", "env", "tty", "expected"),
    [
        ([f"PATH={DEFAULT_PATH}"], [], False, [f"PATH={DEFAULT_PATH}", "HOSTNAME=h"]),
        ([], [], True, [f"PATH={DEFAULT_PATH}", "HOSTNAME=h", "TERM=xterm"]),
        (  # observed: -t -e PATH=/x:/bin -e FOO=1 -e HOSTNAME=zz -e TERM=vt100
            [f"PATH={DEFAULT_PATH}"],
            ["PATH=/x:/bin", "FOO=1", "HOSTNAME=zz", "TERM=vt100"],
            True,
            ["PATH=/x:/bin", "HOSTNAME=zz", "TERM=vt100", "FOO=1"],
        ),
        (  # observed: -t -e FOO (unset in the client) -e BAR=
            [f"PATH={DEFAULT_PATH}"],
            ["FOO", "BAR="],
            True,
            [f"PATH={DEFAULT_PATH}", "HOSTNAME=h", "TERM=xterm", "BAR="],
        ),
        (  # user values override the image's by key; image-only keys stay, after the user's
            ["PATH=/img", "A=1", "B=2"],
            ["B=3", "C=4"],
            False,
            ["PATH=/img", "HOSTNAME=h", "B=3", "C=4", "A=1"],
        ),
        (["A=1"], ["A"], False, [f"PATH={DEFAULT_PATH}", "HOSTNAME=h"]),  # a bare key unsets
        ([], ["PATH"], False, ["HOSTNAME=h"]),
        (["X=a=b"], [], False, [f"PATH={DEFAULT_PATH}", "HOSTNAME=h", "X=a=b"]),
    ],
)
def test_container_env(image_env: list[str], env: list[str], tty: bool, expected: list[str]) -> None:
    assert container_env(image_env, env, "h", tty) == expected


# --- the whole spec ---------------------------------------------------------------------------


def test_default_spec_matches_dockerd() -> None:
    etc = [
        {"destination": "/etc/hosts", "type": "bind", "source": "/c/hosts", "options": ["rbind", "rprivate"]}
    ]
    spec = build_spec(
        opts(env=container_env([], [], CID[:12], False), mounts=etc, cgroups_path=f"/docker/{CID}")
    )
    assert spec["ociVersion"] == "1.0.2"
    assert spec["hostname"] == CID[:12]
    assert spec["root"] == {"path": "/rootfs", "readonly": False}
    p = spec["process"]
    assert p["user"] == {"uid": 0, "gid": 0, "additionalGids": [0]}
    assert p["args"] == ["sleep", "300"] and p["cwd"] == "/" and p["terminal"] is False
    assert p["capabilities"] == {k: list(DEFAULT_CAPS) for k in ("bounding", "effective", "permitted")}
    assert "inheritable" not in p["capabilities"] and "ambient" not in p["capabilities"]
    assert p["oomScoreAdj"] == 0 and "rlimits" not in p and "noNewPrivileges" not in p
    assert spec["mounts"] == DOCKER_MOUNTS + etc
    lx = spec["linux"]
    assert lx["namespaces"] == [{"type": t} for t in ("mount", "network", "uts", "pid", "ipc")]
    assert lx["maskedPaths"] == DOCKER_MASKED and lx["readonlyPaths"] == DOCKER_READONLY
    assert lx["resources"] == {
        "devices": DOCKER_DEVICE_RULES,
        "memory": {"disableOOMKiller": False},
        "cpu": {"shares": 0},
        "blockIO": {"weight": 0},
    }
    assert lx["cgroupsPath"] == f"/docker/{CID}"
    assert lx["sysctl"] == {
        "net.ipv4.ip_unprivileged_port_start": "0",
        "net.ipv4.ping_group_range": "0 2147483647",
    }
    assert lx["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    assert "devices" not in lx


def test_user_and_groups() -> None:
    p = build_spec(opts(uid=1000, gid=50, additional_gids=[7]))["process"]
    assert p["user"] == {"uid": 1000, "gid": 50, "additionalGids": [50, 7]}
    # dockerd 20.10.24 gives a non-root user the bounding set only
    assert p["capabilities"] == {"bounding": list(DEFAULT_CAPS)}


@pytest.mark.parametrize(
    ("add", "drop", "expected"),
    [
        ([], [], list(DEFAULT_CAPS)),
        (
            ["SYS_ADMIN"],
            ["NET_RAW", "chown"],
            [c for c in DEFAULT_CAPS if c not in ("CAP_NET_RAW", "CAP_CHOWN")] + ["CAP_SYS_ADMIN"],
        ),
        (["CAP_SYS_TIME"], [], list(DEFAULT_CAPS) + ["CAP_SYS_TIME"]),
        (["chown"], [], list(DEFAULT_CAPS)),  # already there: not listed twice
        (["NET_RAW"], ["ALL"], ["CAP_NET_RAW"]),
        ([], ["all"], []),
        (["ALL"], ["NET_RAW"], [c for c in ALL_CAPS if c in HOST_CAPS and c != "CAP_NET_RAW"]),
    ],
)
def test_capabilities(add: list[str], drop: list[str], expected: list[str]) -> None:
    assert capabilities(add, drop, False, HOST_CAPS) == expected


def test_capability_errors() -> None:
    with pytest.raises(InvalidParameter, match='unknown capability: "CAP_FOO"'):
        capabilities(["foo"], [], False, HOST_CAPS)
    with pytest.raises(InvalidParameter, match="CAP_SYS_RESOURCE is not available"):
        capabilities(["SYS_RESOURCE"], [], False, HOST_CAPS)


def test_privileged() -> None:
    spec = build_spec(opts(privileged=True, seccomp="default"))
    caps = spec["process"]["capabilities"]["bounding"]
    assert caps == [c for c in ALL_CAPS if c in HOST_CAPS] and "CAP_SYS_RESOURCE" not in caps
    lx = spec["linux"]
    assert "seccomp" not in lx and lx["maskedPaths"] == [] and lx["readonlyPaths"] == []
    mounts = {m["destination"]: m for m in spec["mounts"]}
    assert "ro" not in mounts["/sys"]["options"] and "ro" not in mounts["/sys/fs/cgroup"]["options"]
    assert lx["resources"]["devices"][-1] == {"allow": True, "access": "rwm"}
    assert any(d["path"] == "/dev/null" and d["type"] == "c" for d in lx["devices"])
    assert not any(d["path"].startswith("/dev/pts/") for d in lx["devices"])


def test_resources_as_dockerd() -> None:
    # observed: --memory 64m --memory-swap 128m --memory-reservation 32m --cpus 1.5 --cpu-shares 512
    # --pids-limit 50 --oom-kill-disable --cpuset-cpus 0 --cpuset-mems 0 --memory-swappiness 10
    r = build_spec(
        opts(
            memory=64 << 20,
            memory_swap=128 << 20,
            memory_reservation=32 << 20,
            nano_cpus=1_500_000_000,
            cpu_shares=512,
            pids_limit=50,
            oom_kill_disable=True,
            cpuset_cpus="0",
            cpuset_mems="0",
            memory_swappiness=10,
            blkio_weight=300,
        )
    )["linux"]["resources"]
    assert r["memory"] == {
        "limit": 67108864,
        "reservation": 33554432,
        "swap": 134217728,
        "swappiness": 10,
        "disableOOMKiller": True,
    }
    assert r["cpu"] == {"shares": 512, "quota": 150000, "period": 100000, "cpus": "0", "mems": "0"}
    assert r["pids"] == {"limit": 50} and r["blockIO"] == {"weight": 300}


@pytest.mark.parametrize(
    ("kw", "memory", "cpu", "pids"),
    [
        (
            {"cpu_quota": 50000, "cpu_period": 200000, "memory": 64 << 20},  # swap defaults to 2x memory
            {"limit": 67108864, "swap": 134217728, "disableOOMKiller": False},
            {"shares": 0, "quota": 50000, "period": 200000},
            None,
        ),
        (
            {"pids_limit": -1, "memory": 64 << 20, "memory_swap": -1},
            {"limit": 67108864, "disableOOMKiller": False},
            {"shares": 0},
            None,
        ),
        ({"pids_limit": 0, "memory_swappiness": -1}, {"disableOOMKiller": False}, {"shares": 0}, None),
    ],
)
def test_resource_variants(
    kw: dict[str, Any], memory: dict[str, Any], cpu: dict[str, Any], pids: Any
) -> None:
    r = build_spec(opts(**kw))["linux"]["resources"]
    assert r["memory"] == memory and r["cpu"] == cpu and r.get("pids") == pids


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"memory": 1 << 20}, "Minimum memory limit allowed is 6MB"),
        ({"memory": 64 << 20, "memory_swap": 32 << 20}, "Minimum memoryswap limit should be larger"),
        ({"memory_swap": 64 << 20}, "You should always set the Memory limit"),
        ({"memory": 64 << 20, "memory_reservation": 128 << 20}, "can not be less than memory reservation"),
        ({"memory_swappiness": 101}, "valid memory swappiness range is 0-100"),
        ({"nano_cpus": 10**9, "cpu_quota": 50000}, "Nano CPUs and CPU Quota cannot both be set"),
        ({"nano_cpus": 10**9, "cpu_period": 50000}, "Nano CPUs and CPU Period cannot both be set"),
        ({"nano_cpus": 1000 * 10**9}, "Range of CPUs is from 0.01 to"),
        ({"cpu_period": 100}, "CPU cfs period can not be less than 1ms"),
        ({"cpu_quota": 100}, "CPU cfs quota can not be less than 1ms"),
        ({"blkio_weight": 5}, "Range of blkio weight is from 10 to 1000"),
        ({"oom_score_adj": 1001}, r"range for oom score adj is \[-1000, 1000\]"),
        ({"shm_size": -1}, "SHM size can not be less than 0"),
        ({"cwd": "tmp"}, "needs to be an absolute path"),
        ({"args": []}, "No command specified"),
        ({"network_mode": "bridge"}, "want none, host or a netns path"),
        ({"seccomp": "bogus"}, "seccomp: want default"),
        ({"init": True}, "needs an init binary"),
    ],
)
def test_invalid_parameters(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidParameter, match=message):
        build_spec(opts(**kw))


def test_network_modes_and_sysctls() -> None:
    host = build_spec(opts(network_mode="host"))["linux"]
    assert [n["type"] for n in host["namespaces"]] == ["mount", "uts", "pid", "ipc"]
    assert "sysctl" not in host
    with pytest.raises(InvalidParameter, match="host network namespace"):
        build_spec(opts(network_mode="host", sysctls={"net.core.somaxconn": "100"}))
    path = build_spec(opts(network_mode="/run/netns/c1", sysctls={"net.core.somaxconn": "100"}))["linux"]
    assert path["namespaces"][1] == {"type": "network", "path": "/run/netns/c1"}
    assert (
        path["sysctl"]["net.core.somaxconn"] == "100"
        and path["sysctl"]["net.ipv4.ip_unprivileged_port_start"] == "0"
    )


def test_other_namespace_modes() -> None:
    spec = build_spec(
        opts(pid_mode="host", ipc_mode="/proc/1/ns/ipc", uts_mode="host", cgroupns_mode="private")
    )
    assert spec["linux"]["namespaces"] == [
        {"type": "mount"},
        {"type": "network"},
        {"type": "ipc", "path": "/proc/1/ns/ipc"},
        {"type": "cgroup"},
    ]
    assert "hostname" not in spec  # runc refuses a hostname without a UTS namespace
    no_ipc = build_spec(opts(ipc_mode="none"))
    assert "/dev/shm" not in [m["destination"] for m in no_ipc["mounts"]]


def test_mounts_override_sort_readonly_shm_init() -> None:
    user = [
        {"destination": "/data/sub/x", "type": "bind", "source": "/a", "options": ["rbind"]},
        {"destination": "/dev/shm", "type": "bind", "source": "/b", "options": ["rbind"]},
        {"destination": "/data", "type": "bind", "source": "/c", "options": ["rbind"]},
    ]
    spec = build_spec(opts(mounts=user, readonly_rootfs=True, init=True, init_path="/usr/bin/docker-init"))
    dests = [m["destination"] for m in spec["mounts"]]
    assert dests == [
        "/proc",
        "/dev",
        "/dev/pts",
        "/sys",
        "/sys/fs/cgroup",
        "/dev/mqueue",
        "/data",
        "/dev/shm",
        "/sbin/docker-init",
        "/data/sub/x",
    ]
    assert spec["root"]["readonly"] is True
    assert spec["process"]["args"] == ["/sbin/docker-init", "--", "sleep", "300"]
    assert spec["mounts"][8] == {
        "destination": "/sbin/docker-init",
        "type": "bind",
        "source": "/usr/bin/docker-init",
        "options": ["bind", "ro"],
    }
    shm = build_spec(opts(shm_size=1 << 20))["mounts"][6]
    assert shm["options"][-1] == "size=1048576"
    dev = build_spec(
        opts(mounts=[{"destination": "/dev", "type": "bind", "source": "/dev", "options": ["rbind"]}])
    )
    assert [m["destination"] for m in dev["mounts"]] == ["/proc", "/sys", "/sys/fs/cgroup", "/dev"]


def test_security_options() -> None:
    spec = build_spec(
        opts(
            no_new_privileges=True,
            seccomp="unconfined",
            masked_paths=[],
            readonly_paths=[],
            oom_score_adj=100,
            tty=True,
        )
    )
    assert spec["process"]["noNewPrivileges"] is True and spec["process"]["terminal"] is True
    assert spec["process"]["oomScoreAdj"] == 100
    assert "seccomp" not in spec["linux"]
    assert spec["linux"]["maskedPaths"] == [] and spec["linux"]["readonlyPaths"] == []
    custom = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["chroot"], "action": "SCMP_ACT_ERRNO"}],
    }
    assert build_spec(opts(seccomp=custom))["linux"]["seccomp"]["syscalls"] == [
        {"names": ["chroot"], "action": "SCMP_ACT_ERRNO"}
    ]


def test_ulimits() -> None:
    spec = build_spec(
        opts(
            ulimits=[
                {"Name": "nofile", "Soft": 1024, "Hard": 2048},
                {"Name": "nproc", "Soft": 100, "Hard": 100},
            ]
        )
    )
    assert spec["process"]["rlimits"] == [
        {"type": "RLIMIT_NOFILE", "hard": 2048, "soft": 1024},
        {"type": "RLIMIT_NPROC", "hard": 100, "soft": 100},
    ]
    with pytest.raises(InvalidParameter, match="invalid ulimit type: bogus"):
        build_spec(opts(ulimits=[{"Name": "bogus", "Soft": 1, "Hard": 1}]))
    with pytest.raises(InvalidParameter, match="soft limit must be less than or equal to hard limit"):
        build_spec(opts(ulimits=[{"Name": "nofile", "Soft": 2, "Hard": 1}]))


def test_ulimit_above_host_hard_limit_is_refused() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        pytest.skip("this host has no hard RLIMIT_NOFILE")
    with pytest.raises(InvalidParameter, match=f"above this host's hard limit {hard}.*CAP_SYS_RESOURCE"):
        build_spec(opts(ulimits=[{"Name": "nofile", "Soft": 1024, "Hard": hard + 1}]))
    # with CAP_SYS_RESOURCE the kernel lets runc raise it, so berth must not refuse
    spec = build_spec(
        opts(host_caps=frozenset(ALL_CAPS), ulimits=[{"Name": "nofile", "Soft": 1, "Hard": hard + 1}])
    )
    assert spec["process"]["rlimits"][0]["hard"] == hard + 1


def test_spec_is_fresh_each_call() -> None:
    """Callers may edit the returned dict: nothing in it may alias module-level defaults."""
    a = build_spec(opts())
    a["mounts"][0]["options"].append("x")
    a["linux"]["resources"]["devices"][0]["allow"] = True
    a["linux"]["seccomp"]["syscalls"][0]["names"].append("x")
    assert build_spec(opts()) != a
