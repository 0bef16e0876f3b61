"""Build a container's OCI runtime `config.json` from Docker create options.

dockerd 20.10 (daemon/oci_linux.go, oci/defaults.go) is the reference: the same default mounts,
capabilities, masked paths, device rules, namespaces and resource mapping, checked against the
`config.json` it writes. Pure logic apart from reading this host's capability set, rlimits and,
for `--privileged` only, its /dev; it never writes files or starts anything.
"""

from __future__ import annotations

import os
import posixpath
import resource
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from berth.common.errors import InvalidParameter
from berth.runtime import seccomp as seccomp_mod
from berth.runtime.capabilities import capabilities, host_capabilities
from berth.runtime.devices import host_devices

OCI_VERSION = "1.0.2"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHM_SIZE = 64 * 1024 * 1024
INIT_PATH_IN_CONTAINER = "/sbin/docker-init"

DEFAULT_MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
)  # fmt: skip
DEFAULT_READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
# docker's device cgroup: deny all, allow zero, null, urandom, random, tty, console, and deny
# /dev/fuse explicitly (runc appends its own rules for the pts, ptmx and tun nodes it creates).
_DEVICE_RULES = (
    [{"allow": False, "access": "rwm"}]
    + [
        {"allow": True, "type": "c", "major": ma, "minor": mi, "access": "rwm"}
        for ma, mi in ((1, 5), (1, 3), (1, 9), (1, 8), (5, 0), (5, 1))
    ]
    + [{"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"}]
)
# Lets ping and low ports work without CAP_NET_RAW/NET_BIND_SERVICE in a private netns.
_NET_SYSCTLS = {
    "net.ipv4.ip_unprivileged_port_start": "0",
    "net.ipv4.ping_group_range": "0 2147483647",
}
_RLIMITS = frozenset(
    "as core cpu data fsize locks memlock msgqueue nice nofile nproc rss "
    "rtprio rttime sigpending stack".split()
)
_RLIM_INFINITY = 2**64 - 1
_INT64_MAX = 2**63 - 1
_MIN_MEMORY = 6 * 1024 * 1024


def resolve_args(
    image_entrypoint: list[str] | None,
    image_cmd: list[str] | None,
    entrypoint: list[str] | None,
    cmd: list[str] | None,
    entrypoint_set: bool,
) -> list[str]:
    """The process args from image and create-time ENTRYPOINT/CMD, by dockerd's merge rules.

    `entrypoint_set` means the create request carried an Entrypoint (even empty). A non-empty one
    replaces the image's and drops the image CMD; `[""]` (the CLI's `--entrypoint ""`) also
    clears the entrypoint itself. An empty list clears only the entrypoint (the API's `[]`).
    """
    ep = list(entrypoint or []) if entrypoint_set else list(image_entrypoint or [])
    args = list(cmd or [])
    if not args and not (entrypoint_set and ep):
        args = list(image_cmd or [])
    if ep == [""]:
        ep = []
    if not ep and not args:
        raise InvalidParameter("No command specified")
    return ep + args


def container_env(image_env: list[str], env: list[str], hostname: str, tty: bool) -> list[str]:
    """docker's process environment: defaults, then image env overridden by the user's.

    A user value without "=" unsets the variable (the CLI sends `-e FOO` so when FOO is unset).
    """
    user_keys = {e.split("=", 1)[0] for e in env}
    merged = list(env) + [e for e in image_env if e.split("=", 1)[0] not in user_keys]
    out = [f"PATH={DEFAULT_PATH}", f"HOSTNAME={hostname}"] + (["TERM=xterm"] if tty else [])
    index = {e.split("=", 1)[0]: i for i, e in enumerate(out)}
    removed: set[int] = set()
    for e in merged:
        key, eq, _ = e.partition("=")
        if not eq:
            if key in index:
                removed.add(index[key])
            continue
        if key in index:
            out[index[key]] = e
            removed.discard(index[key])
        else:
            index[key] = len(out)
            out.append(e)
    return [e for i, e in enumerate(out) if i not in removed]


@dataclass
class SpecOptions:
    """Everything `build_spec` needs; Docker field names in comments. None = not set by the user."""

    container_id: str
    rootfs: str
    args: list[str]
    env: list[str] = field(default_factory=list)
    cwd: str = "/"  # WorkingDir
    uid: int = 0
    gid: int = 0
    additional_gids: list[int] = field(default_factory=list)  # passwd groups + GroupAdd
    hostname: str = ""
    domainname: str = ""
    tty: bool = False
    open_stdin: bool = False  # not part of config.json; carried for the runtime driver
    network_mode: str = "none"  # "none" (new netns, lo only) | "host" | a netns path
    pid_mode: str = ""  # "" private | "host" | a pid-ns path
    ipc_mode: str = ""  # "" private | "host" | "none" | an ipc-ns path
    uts_mode: str = ""  # "" private | "host"
    cgroupns_mode: str = "host"  # docker 20.10's default on cgroup v1; or "private"
    privileged: bool = False
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    readonly_rootfs: bool = False
    mounts: list[dict[str, Any]] = field(default_factory=list)  # OCI mounts: binds, volumes, etc files
    devices: list[dict[str, Any]] = field(default_factory=list)  # OCI linux.devices (--device)
    device_cgroup_rules: list[dict[str, Any]] = field(default_factory=list)  # OCI device rules
    cgroups_path: str = ""
    memory: int | None = None  # Memory
    memory_swap: int | None = None  # MemorySwap (-1 unlimited)
    memory_reservation: int | None = None  # MemoryReservation
    memory_swappiness: int | None = None  # MemorySwappiness
    nano_cpus: int | None = None  # NanoCpus
    cpu_shares: int | None = None  # CpuShares
    cpu_quota: int | None = None  # CpuQuota
    cpu_period: int | None = None  # CpuPeriod
    cpuset_cpus: str | None = None  # CpusetCpus
    cpuset_mems: str | None = None  # CpusetMems
    pids_limit: int | None = None  # PidsLimit (0 or -1 unlimited)
    blkio_weight: int | None = None  # BlkioWeight
    oom_kill_disable: bool | None = None  # OomKillDisable
    sysctls: dict[str, str] = field(default_factory=dict)
    masked_paths: list[str] | None = None  # None = docker's defaults; [] = systempaths=unconfined
    readonly_paths: list[str] | None = None
    seccomp: str | dict[str, Any] = "default"  # "default" | "unconfined" | a moby-format profile
    no_new_privileges: bool = False
    ulimits: list[dict[str, Any]] = field(default_factory=list)  # [{"Name", "Soft", "Hard"}]
    oom_score_adj: int = 0
    shm_size: int | None = None  # bytes; None = 64 MiB
    init: bool = False
    init_path: str = ""  # host path of docker-init/tini, bind-mounted at /sbin/docker-init
    host_caps: frozenset[str] | None = None  # None = this process's bounding set


def build_spec(opts: SpecOptions) -> dict[str, Any]:
    """The full OCI config for `opts`; raises InvalidParameter on bad user input."""
    o = opts
    if not o.args:
        raise InvalidParameter("No command specified")
    cwd = o.cwd or "/"
    if not cwd.startswith("/"):
        raise InvalidParameter(f"the working directory '{cwd}' is invalid, it needs to be an absolute path")
    host_caps = o.host_caps if o.host_caps is not None else host_capabilities()
    caps = capabilities(o.cap_add, o.cap_drop, o.privileged, host_caps)
    args = list(o.args)
    mounts = list(o.mounts)
    if o.init:
        if not o.init_path:
            raise InvalidParameter("--init needs an init binary (docker-init or tini) on the host")
        args = [INIT_PATH_IN_CONTAINER, "--"] + args
        mounts.append(_m(INIT_PATH_IN_CONTAINER, "bind", o.init_path, ["bind", "ro"]))

    # dockerd 20.10 gives a non-root user only the bounding set: it starts with no caps.
    cap_sets = ("bounding", "effective", "permitted") if o.uid == 0 else ("bounding",)
    process: dict[str, Any] = {
        "terminal": o.tty,
        "user": {"uid": o.uid, "gid": o.gid, "additionalGids": [o.gid] + list(o.additional_gids)},
        "args": args,
        "env": list(o.env),
        "cwd": cwd,
        "capabilities": {k: list(caps) for k in cap_sets},
        "oomScoreAdj": _oom_score_adj(o.oom_score_adj),
    }
    rlimits = _rlimits(o.ulimits, host_caps)
    if rlimits:
        process["rlimits"] = rlimits
    if o.no_new_privileges:
        process["noNewPrivileges"] = True

    linux: dict[str, Any] = {
        "resources": resources(o),
        "namespaces": _namespaces(o),
        "maskedPaths": [] if o.privileged else list(_or(o.masked_paths, DEFAULT_MASKED_PATHS)),
        "readonlyPaths": [] if o.privileged else list(_or(o.readonly_paths, DEFAULT_READONLY_PATHS)),
    }
    if o.privileged:
        linux["resources"]["devices"].append({"allow": True, "access": "rwm"})
    sysctl = _sysctls(o)
    if sysctl:
        linux["sysctl"] = sysctl
    if o.cgroups_path:
        linux["cgroupsPath"] = o.cgroups_path
    devices = (host_devices() if o.privileged else []) + list(o.devices)
    if devices:
        linux["devices"] = devices
    profile = _seccomp(o.seccomp, o.privileged, caps)
    if profile is not None:
        linux["seccomp"] = profile

    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": o.rootfs, "readonly": o.readonly_rootfs},
        "mounts": _mounts(o, mounts),
        "linux": linux,
    }
    if o.uts_mode != "host":  # runc refuses a hostname without a private UTS namespace
        spec["hostname"] = o.hostname or o.container_id[:12]
        if o.domainname:
            spec["domainname"] = o.domainname
    return spec




def resources(o: SpecOptions) -> dict[str, Any]:
    """Map HostConfig resources to OCI `linux.resources`, with dockerd's validation messages."""
    _check_resources(o)
    memory: dict[str, Any] = {}
    if o.memory:
        memory["limit"] = o.memory
    if o.memory_reservation:
        memory["reservation"] = o.memory_reservation
    swap = o.memory_swap
    if o.memory and not swap:
        swap = min(2 * o.memory, _INT64_MAX)  # dockerd's create-time default: as much swap as memory
    if swap and swap > 0:
        memory["swap"] = swap
    if o.memory_swappiness is not None and o.memory_swappiness != -1:
        memory["swappiness"] = o.memory_swappiness
    memory["disableOOMKiller"] = bool(o.oom_kill_disable)

    cpu: dict[str, Any] = {"shares": o.cpu_shares or 0}
    if o.nano_cpus:
        cpu["quota"] = o.nano_cpus * 100000 // 10**9
        cpu["period"] = 100000
    if o.cpu_quota:
        cpu["quota"] = o.cpu_quota
    if o.cpu_period:
        cpu["period"] = o.cpu_period
    if o.cpuset_cpus:
        cpu["cpus"] = o.cpuset_cpus
    if o.cpuset_mems:
        cpu["mems"] = o.cpuset_mems

    out: dict[str, Any] = {
        "devices": [dict(r) for r in _DEVICE_RULES] + [dict(r) for r in o.device_cgroup_rules],
        "memory": memory,
        "cpu": cpu,
    }
    if o.pids_limit and o.pids_limit > 0:
        out["pids"] = {"limit": o.pids_limit}
    out["blockIO"] = {"weight": o.blkio_weight or 0}
    return out


def _check_resources(o: SpecOptions) -> None:
    for message in _resource_errors(o):
        raise InvalidParameter(message)


def _resource_errors(o: SpecOptions) -> Iterator[str]:
    """dockerd's checks (verifyPlatformContainerResources), with its messages."""
    mem, swap, res = o.memory or 0, o.memory_swap or 0, o.memory_reservation or 0
    nano, period, quota = o.nano_cpus or 0, o.cpu_period or 0, o.cpu_quota or 0
    if 0 < mem < _MIN_MEMORY:
        yield "Minimum memory limit allowed is 6MB"
    if mem > 0 and 0 < swap < mem:
        yield "Minimum memoryswap limit should be larger than memory limit, see usage"
    if mem == 0 and swap > 0:
        yield "You should always set the Memory limit when using Memoryswap limit, see usage"
    if 0 < res < _MIN_MEMORY:
        yield "Minimum memory reservation allowed is 6MB"
    if mem > 0 and res > mem:
        yield "Minimum memory limit can not be less than memory reservation limit, see usage"
    if o.memory_swappiness is not None and not -1 <= o.memory_swappiness <= 100:
        yield f"Invalid value: {o.memory_swappiness}, valid memory swappiness range is 0-100"
    if nano and period:
        yield "Conflicting options: Nano CPUs and CPU Period cannot both be set"
    if nano and quota:
        yield "Conflicting options: Nano CPUs and CPU Quota cannot both be set"
    ncpu = os.cpu_count() or 1
    if nano < 0 or nano > ncpu * 10**9:
        yield f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"
    if period and not 1000 <= period <= 1000000:
        yield "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"
    if 0 < quota < 1000:
        yield "CPU cfs quota can not be less than 1ms (i.e. 1000)"
    if (o.cpu_shares or 0) < 0:
        yield "shares: invalid argument"
    if o.blkio_weight and not 10 <= o.blkio_weight <= 1000:
        yield "Range of blkio weight is from 10 to 1000"
    if (o.shm_size or 0) < 0:
        yield "SHM size can not be less than 0"


def _oom_score_adj(value: int) -> int:
    if not -1000 <= value <= 1000:
        raise InvalidParameter(f"Invalid value {value}, range for oom score adj is [-1000, 1000]")
    return value


def _rlimits(ulimits: list[dict[str, Any]], host_caps: frozenset[str]) -> list[dict[str, Any]]:
    out = []
    for u in ulimits:
        name = str(u.get("Name", "")).lower()
        if name not in _RLIMITS:
            raise InvalidParameter(f"invalid ulimit type: {name}")
        soft, hard = _rlim(u.get("Soft", 0)), _rlim(u.get("Hard", 0))
        if soft > hard:
            raise InvalidParameter(
                f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
            )
        kind = "RLIMIT_" + name.upper()
        # Without CAP_SYS_RESOURCE nothing (runc included) may raise a hard limit above ours;
        # runc would fail at start with a bare EPERM, so say which limit and why now.
        host_hard = _rlim(resource.getrlimit(getattr(resource, kind))[1])
        if hard > host_hard and "CAP_SYS_RESOURCE" not in host_caps:
            raise InvalidParameter(
                f"ulimit {name}: hard limit {_show(hard)} is above this host's hard limit {_show(host_hard)} "
                "and berth lacks CAP_SYS_RESOURCE to raise it"
            )
        out.append({"type": kind, "hard": hard, "soft": soft})
    return out


def _rlim(value: Any) -> int:
    v = int(value)
    return _RLIM_INFINITY if v < 0 else v  # -1 is "unlimited" in Docker and in Python's resource


def _show(v: int) -> str:
    return "unlimited" if v == _RLIM_INFINITY else str(v)


def _namespaces(o: SpecOptions) -> list[dict[str, str]]:
    out: list[dict[str, str]] = [{"type": "mount"}]
    if o.network_mode == "none":
        out.append({"type": "network"})
    elif o.network_mode.startswith("/"):
        out.append({"type": "network", "path": o.network_mode})
    elif o.network_mode != "host":
        raise InvalidParameter(f"network mode {o.network_mode!r}: want none, host or a netns path")
    for kind, mode in (("uts", o.uts_mode), ("pid", o.pid_mode), ("ipc", o.ipc_mode)):
        if mode == "host":
            continue
        ns = {"type": kind}
        if mode.startswith("/"):
            ns["path"] = mode
        out.append(ns)
    if o.cgroupns_mode == "private":
        out.append({"type": "cgroup"})
    return out


def _sysctls(o: SpecOptions) -> dict[str, str]:
    host_net = o.network_mode == "host"
    if host_net:
        for key in o.sysctls:
            if key.startswith("net."):
                raise InvalidParameter(f"sysctl {key!r} is not allowed in the host network namespace")
    out = {} if host_net else dict(_NET_SYSCTLS)
    if o.domainname and o.uts_mode != "host":
        # as dockerd: runc before 1.2 ignores config.json's domainname; the sysctl works everywhere
        out["kernel.domainname"] = o.domainname
    out.update(o.sysctls)
    return out


def _seccomp(choice: str | dict[str, Any], privileged: bool, caps: list[str]) -> dict[str, Any] | None:
    if privileged or choice == "unconfined":
        return None
    if choice == "default":
        return seccomp_mod.default_profile(frozenset(caps))
    if isinstance(choice, dict):
        return seccomp_mod.convert(choice, frozenset(caps))
    raise InvalidParameter(f"seccomp: want default, unconfined or a profile, not {choice!r}")


def _mounts(o: SpecOptions, user: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """docker's default mounts (minus those the user overrides), then user mounts, parents first."""
    shm = o.shm_size or DEFAULT_SHM_SIZE
    defaults: list[dict[str, Any]] = [
        _m("/proc", "proc", "proc", ["nosuid", "noexec", "nodev"]),
        _m("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        _m(
            "/dev/pts",
            "devpts",
            "devpts",
            ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        ),
        _m("/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", "ro"]),
        _m("/sys/fs/cgroup", "cgroup", "cgroup", ["ro", "nosuid", "noexec", "nodev"]),
        _m("/dev/mqueue", "mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
    ]
    if o.ipc_mode == "host":
        defaults.append(_m("/dev/shm", "bind", "/dev/shm", ["rbind", "rprivate"]))
    elif o.ipc_mode != "none":
        defaults.append(
            _m("/dev/shm", "tmpfs", "shm", ["nosuid", "noexec", "nodev", "mode=1777", f"size={shm}"])
        )

    taken = {posixpath.normpath(m["destination"]) for m in user}
    kept = [
        m
        for m in defaults
        if m["destination"] not in taken and not ("/dev" in taken and m["destination"].startswith("/dev/"))
    ]
    for m in kept:
        if o.readonly_rootfs and m["destination"] in ("/sys", "/sys/fs/cgroup") and "ro" not in m["options"]:
            m["options"].append("ro")
        if o.privileged and m["destination"] in ("/sys", "/sys/fs/cgroup"):
            m["options"] = [x for x in m["options"] if x != "ro"]
    ordered = sorted(user, key=lambda m: posixpath.normpath(m["destination"]).count("/"))
    return kept + [dict(m) for m in ordered]


def _m(dest: str, kind: str, source: str, options: list[str]) -> dict[str, Any]:
    return {"destination": dest, "type": kind, "source": source, "options": options}


def _or(value: list[str] | None, default: tuple[str, ...]) -> list[str] | tuple[str, ...]:
    return default if value is None else value


# docker-init is tini built static; a dynamic tini would not run in an image without libc.
INIT_CANDIDATES = ("/usr/bin/docker-init", "/usr/libexec/docker/docker-init", "/usr/bin/tini-static",
                   "/usr/libexec/podman/catatonit")


def init_binary(candidates: tuple[str, ...] = INIT_CANDIDATES) -> str:
    """The host's init for --init ("" when none is installed: build_spec then says so)."""
    return next((p for p in candidates if os.access(p, os.X_OK)), "")



def apply_user_namespace(spec: dict[str, Any], uid_mappings: list[dict[str, int]],
                         gid_mappings: list[dict[str, int]], own_netns: bool = False,
                         device_sources: dict[str, str] | None = None) -> None:
    """Put a container's config in a new user namespace with these mappings (dockerd's
    userns-remap). A network namespace must belong to the user namespace for the container's
    root to mount /sys, set net sysctls and be joined by `exec`: `own_netns` has the runtime make
    one (instead of joining the path given), and joining another container's (`/proc/PID/ns/net`)
    joins its user namespace too, as dockerd does."""
    linux = spec["linux"]
    namespaces = linux["namespaces"]
    user_ns: dict[str, str] = {"type": "user"}
    for ns in namespaces:
        path = ns.get("path", "")
        if ns["type"] != "network" or not path:
            continue
        if own_netns:
            del ns["path"]
        elif path.startswith("/proc/") and path.endswith("/ns/net"):
            user_ns["path"] = path[: -len("net")] + "user"
    linux["namespaces"] = [ns for ns in namespaces if ns["type"] != "user"] + [user_ns]
    linux["uidMappings"] = list(uid_mappings)
    linux["gidMappings"] = list(gid_mappings)
    # As dockerd: a read-only remount of the cgroup binds fails inside a user namespace.
    for m in spec["mounts"]:
        if m["type"] == "cgroup":
            m["options"] = [o for o in m["options"] if o != "ro"]
    # In a user namespace runc binds device nodes instead of making them, from the path they
    # get in the container: one put elsewhere (`--device /dev/a:/dev/b`) is bound from its host path.
    sources = device_sources or {}
    moved = {d["path"]: sources[d["path"]] for d in linux.get("devices", [])
             if sources.get(d["path"], d["path"]) != d["path"]}
    if moved:
        linux["devices"] = [d for d in linux["devices"] if d["path"] not in moved]
        spec["mounts"] += [_m(dest, "bind", src, ["bind", "nosuid", "noexec"]) for dest, src in moved.items()]
    sysctl = linux.get("sysctl") or {}
    if sysctl.get("net.ipv4.ping_group_range") == _NET_SYSCTLS["net.ipv4.ping_group_range"]:
        # written from inside the namespace, the range must be one of its mapped groups
        sysctl["net.ipv4.ping_group_range"] = f"0 {sum(m['size'] for m in gid_mappings) - 1}"
