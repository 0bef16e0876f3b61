"""From a create request and an image config to the container's Config, HostConfig and bundle."""

from __future__ import annotations

import os
from typing import Any

from berth.common.errors import InvalidParameter
from berth.runtime import devices, etcfiles, logrotate, spec, users

from .health import merge_healthcheck
from .limits import verify_resources
from .model import Container

_HOST_CONFIG_DEFAULTS: dict[str, Any] = {
    "Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "json-file", "Config": {}},
    "NetworkMode": "default", "PortBindings": {}, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
    "AutoRemove": False, "VolumeDriver": "", "VolumesFrom": None, "CapAdd": None, "CapDrop": None,
    "CgroupnsMode": "host", "Dns": [], "DnsOptions": [], "DnsSearch": [], "ExtraHosts": None,
    "GroupAdd": None, "IpcMode": "private", "Cgroup": "", "Links": None, "OomScoreAdj": 0,
    "PidMode": "", "Privileged": False, "PublishAllPorts": False, "ReadonlyRootfs": False,
    "SecurityOpt": None, "UTSMode": "", "UsernsMode": "", "ShmSize": 67108864, "Runtime": "",
    "ConsoleSize": [0, 0], "Isolation": "", "CpuShares": 0, "Memory": 0, "NanoCpus": 0,
    "CgroupParent": "", "BlkioWeight": 0, "BlkioWeightDevice": [], "BlkioDeviceReadBps": None,
    "BlkioDeviceWriteBps": None, "BlkioDeviceReadIOps": None, "BlkioDeviceWriteIOps": None,
    "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0, "CpusetCpus": "",
    "CpusetMems": "", "Devices": [], "DeviceCgroupRules": None, "DeviceRequests": None,
    "KernelMemory": 0, "KernelMemoryTCP": 0, "MemoryReservation": 0, "MemorySwap": 0,
    "MemorySwappiness": None, "OomKillDisable": False, "PidsLimit": None, "Ulimits": None,
    "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
    "MaskedPaths": None, "ReadonlyPaths": None, "Init": None, "Sysctls": None, "Tmpfs": None,
}

_HOST_CONFIG_KEYS = {k.lower(): k for k in _HOST_CONFIG_DEFAULTS}


def normalize_host_config(hc: Any) -> dict[str, Any]:
    if not isinstance(hc, dict):
        raise InvalidParameter("HostConfig must be a JSON object")
    out = dict(_HOST_CONFIG_DEFAULTS)
    # dockerd decodes JSON keys case-insensitively (docker-py sends `CPURealtimePeriod`)
    hc = {_HOST_CONFIG_KEYS.get(k.lower(), k): v for k, v in hc.items()}
    out.update({k: v for k, v in hc.items() if v is not None or k not in out})
    mode = out.get("NetworkMode") or "default"
    out["NetworkMode"] = mode
    if not isinstance(mode, str) or (mode.startswith("container:") and len(mode) == len("container:")):
        raise InvalidParameter(f"invalid network mode: {mode}")
    # Other names are user-defined networks: the network service resolves them at create.
    for key, word, allowed in (("PidMode", "PID", ("", "host")), ("UTSMode", "UTS", ("", "host")),
                               ("IpcMode", "IPC", ("", "private", "shareable", "host", "none"))):
        val = out.get(key) or ""
        joins = key != "UTSMode" and isinstance(val, str) and val.startswith("container:") and len(val) > 10
        if not isinstance(val, str) or (val not in allowed and not joins):
            raise InvalidParameter(f"invalid {word} mode: {val}")
    out["IpcMode"] = out.get("IpcMode") or "private"  # dockerd's default-ipc-mode, shown by inspect
    cgroupns = out.get("CgroupnsMode") or "host"
    if cgroupns not in ("host", "private"):
        raise InvalidParameter(f"invalid cgroup namespace mode: {cgroupns}")
    out["CgroupnsMode"] = cgroupns
    parent = out.get("CgroupParent") or ""
    if not isinstance(parent, str) or ".." in parent.split("/"):
        raise InvalidParameter(f"invalid cgroup parent: {parent}")
    # what dockerd's inspect shows for "unset": no limit is null, and the default masks are listed
    if isinstance(out.get("PidsLimit"), int) and out["PidsLimit"] <= 0:
        out["PidsLimit"] = None
    if out.get("MemorySwappiness") == -1:
        out["MemorySwappiness"] = None
    if not out.get("Privileged"):
        if out.get("MaskedPaths") is None:
            out["MaskedPaths"] = list(spec.DEFAULT_MASKED_PATHS)
        if out.get("ReadonlyPaths") is None:
            out["ReadonlyPaths"] = list(spec.DEFAULT_READONLY_PATHS)
    rp = out.get("RestartPolicy") or {}
    if not isinstance(rp, dict):
        raise InvalidParameter("RestartPolicy must be an object")
    name = rp.get("Name") or "no"
    if name not in ("no", "always", "on-failure", "unless-stopped"):
        raise InvalidParameter(f"invalid restart policy '{name}'")
    if out.get("AutoRemove") and name != "no":
        raise InvalidParameter("can't create 'AutoRemove' container with restart policy")
    out["RestartPolicy"] = {"Name": name, "MaximumRetryCount": int(rp.get("MaximumRetryCount") or 0)}
    out["LogConfig"] = _log_config(out.get("LogConfig"))
    for key in ("Memory", "MemorySwap", "MemoryReservation", "NanoCpus", "CpuShares", "CpuQuota",
                "CpuPeriod", "ShmSize", "BlkioWeight", "OomScoreAdj", "MemorySwappiness", "PidsLimit",
                "CpuRealtimePeriod", "CpuRealtimeRuntime", "KernelMemory", "KernelMemoryTCP", "CpuCount",
                "CpuPercent"):
        val = out.get(key)
        if val is not None and (not isinstance(val, int) or isinstance(val, bool)):
            raise InvalidParameter(f"HostConfig.{key} must be an integer")
    for key in ("CpusetCpus", "CpusetMems"):
        if not isinstance(out.get(key) or "", str):
            raise InvalidParameter(f"HostConfig.{key} must be a string")
    verify_resources(out)
    if out.get("NanoCpus") and (out.get("CpuQuota") or out.get("CpuPeriod")):
        raise InvalidParameter("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if out.get("StorageOpt"):
        # a size quota berth's overlay layers cannot enforce: refused, as by dockerd's overlay2
        # on anything but xfs with project quotas, rather than accepted and ignored
        raise InvalidParameter("--storage-opt is supported only for overlay over xfs with 'pquota' mount option")
    return out


# The drivers whose semantics berth gives (conmon writes the file; `none` keeps `logs` from
# reading it); an empty type means the default, as in dockerd.
LOG_DRIVERS = ("json-file", "local", "none")


def _log_config(lc: Any) -> dict[str, Any]:
    if lc is None:
        lc = {}
    if not isinstance(lc, dict):
        raise InvalidParameter("LogConfig must be an object")
    typ = lc.get("Type") or "json-file"
    if typ not in LOG_DRIVERS:
        raise InvalidParameter(f'error looking up logging plugin {typ}: plugin "{typ}" not found')
    opts = lc.get("Config") or {}
    if not isinstance(opts, dict):
        raise InvalidParameter("LogConfig.Config must be an object")
    opts = {str(k): str(v) for k, v in opts.items()}
    logrotate.check_log_opts(typ, opts)
    return {"Type": typ, "Config": opts}


def networks_for(hc: dict[str, Any]) -> dict[str, Any]:
    mode = hc["NetworkMode"]
    if mode in ("none", "host"):
        return {mode: _endpoint()}
    # Without a network service (tools and tests that build a ContainerService alone),
    # "default"/"bridge" containers get a private netns with loopback only, as `none`;
    # berthd's ContainerService replaces this with NetworkService.plan.
    return {"none": _endpoint()}


def _endpoint() -> dict[str, Any]:
    return {"IPAMConfig": None, "Links": None, "Aliases": None, "NetworkID": "", "EndpointID": "",
            "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0, "MacAddress": "", "DriverOpts": None}


def _merge_env(image_env: list[str], env: list[str]) -> list[str]:
    out: dict[str, str] = {}
    for item in [*image_env, *env]:
        key = item.split("=", 1)[0]
        out[key] = item
    return list(out.values())


def merge_config(image_cfg: dict[str, Any], body: dict[str, Any], cid: str) -> dict[str, Any]:
    """The container's Config as dockerd stores it: the request over the image's defaults."""
    env = body.get("Env") or []
    if not isinstance(env, list) or not all(isinstance(e, str) for e in env):
        raise InvalidParameter("Env must be a list of strings")
    labels = dict(image_cfg.get("Labels") or {})
    labels.update(body.get("Labels") or {})
    entrypoint, cmd = _requested_command(body)
    ep_set = entrypoint is not None
    if not ep_set:
        entrypoint = image_cfg.get("Entrypoint")
    if cmd is None and not ep_set:
        cmd = image_cfg.get("Cmd")
    exposed = dict(image_cfg.get("ExposedPorts") or {})
    exposed.update(body.get("ExposedPorts") or {})
    volumes = dict(image_cfg.get("Volumes") or {})
    volumes.update(body.get("Volumes") or {})
    hostname = body.get("Hostname") or cid[:12]
    cfg: dict[str, Any] = {
        "Hostname": hostname,
        "Domainname": body.get("Domainname") or "",
        "User": body.get("User") if body.get("User") else (image_cfg.get("User") or ""),
        "AttachStdin": bool(body.get("AttachStdin")),
        "AttachStdout": bool(body.get("AttachStdout")),
        "AttachStderr": bool(body.get("AttachStderr")),
        "Tty": bool(body.get("Tty")),
        "OpenStdin": bool(body.get("OpenStdin")),
        "StdinOnce": bool(body.get("StdinOnce")),
        "Env": _merge_env(list(image_cfg.get("Env") or []), env),
        "Cmd": cmd,
        "Image": body["Image"],
        "Volumes": volumes or None,
        "WorkingDir": body.get("WorkingDir") or image_cfg.get("WorkingDir") or "",
        "Entrypoint": entrypoint,
        "OnBuild": image_cfg.get("OnBuild"),
        "Labels": labels,
    }
    if exposed:
        cfg["ExposedPorts"] = exposed
    stop_signal = body.get("StopSignal") or image_cfg.get("StopSignal")
    if stop_signal:
        cfg["StopSignal"] = stop_signal
    if body.get("StopTimeout") is not None:
        cfg["StopTimeout"] = body["StopTimeout"]
    health = merge_healthcheck(image_cfg.get("Healthcheck"), body.get("Healthcheck"))
    if health:
        cfg["Healthcheck"] = health
    return cfg


def _requested_command(body: dict[str, Any]) -> tuple[list[str] | None, list[str] | None]:
    """The request's Entrypoint and Cmd as lists (the API also accepts plain strings)."""
    entrypoint = body.get("Entrypoint")
    cmd = body.get("Cmd")
    if isinstance(cmd, str):
        cmd = [cmd]
    if isinstance(entrypoint, str):
        entrypoint = [entrypoint] if entrypoint else []
    return entrypoint, cmd


def command(image_cfg: dict[str, Any], body: dict[str, Any]) -> tuple[str, list[str]]:
    entrypoint, cmd = _requested_command(body)
    argv = spec.resolve_args(image_cfg.get("Entrypoint"), image_cfg.get("Cmd"), entrypoint, cmd,
                             entrypoint is not None)
    return argv[0], argv[1:]


def build_bundle(c: Container, cdir: str, rootfs: str,
                 user_mounts: list[dict[str, Any]] | None = None, netns_path: str | None = None,
                 ip_addresses: list[str] | None = None, *, embedded_dns: bool = False,
                 link_hosts: list[tuple[str, str]] | None = None,
                 link_env: list[str] | None = None, namespaces: dict[str, str] | None = None) -> dict[str, Any]:
    """Write the per-container /etc files and return the OCI config for this start.
    `user_mounts` (binds, volumes, tmpfs) follow the /etc files; one at the same path wins.
    `netns_path` is the network namespace to join (bridge networks, `container:`), with the
    container's own addresses for /etc/hosts; `embedded_dns`, `link_hosts` and `link_env` come
    from the network service (built-in DNS, legacy links); `namespaces` the pid/ipc/uts modes as
    SpecOptions takes them (`host`, `none` or a namespace path to join)."""
    hc = c.host_config
    cfg = c.config
    mode = hc["NetworkMode"]
    host_net = mode == "host"
    host_uts = host_net or hc.get("UTSMode") == "host"
    etc_mounts = etcfiles.write_etc_files(
        cdir, hostname=cfg["Hostname"] if not host_uts else etcfiles.host_hostname(),
        domainname=cfg.get("Domainname") or "", host_network=host_net,
        extra_hosts=hc.get("ExtraHosts") or (), dns=hc.get("Dns") or (),
        dns_search=hc.get("DnsSearch") or (), dns_options=hc.get("DnsOptions") or (),
        ip_addresses=ip_addresses or (), links=link_hosts or (), embedded_dns=embedded_dns)
    uid, gid, extra_gids = users.resolve_user(rootfs, cfg.get("User") or "")
    if hc.get("GroupAdd"):
        extra_gids = extra_gids + users.resolve_groups(rootfs, list(hc["GroupAdd"]))
    cwd = cfg.get("WorkingDir") or "/"
    if not cwd.startswith("/"):
        raise InvalidParameter(f"the working directory '{cwd}' is invalid, it needs to be an absolute path")
    if cwd != "/":
        # docker creates a missing working directory (owned by the container user)
        target = os.path.join(rootfs, cwd.lstrip("/"))
        if not os.path.lexists(target):
            os.makedirs(target, exist_ok=True)
            os.chown(target, uid, gid)
    kwargs: dict[str, Any] = dict(
        container_id=c.id,
        rootfs=rootfs,
        args=[c.path, *c.args],
        env=spec.container_env(link_env or [], cfg.get("Env") or [], cfg["Hostname"], bool(cfg.get("Tty"))),
        cwd=cwd,
        uid=uid,
        gid=gid,
        additional_gids=extra_gids,
        hostname=cfg["Hostname"] if not host_net else etcfiles.host_hostname(),
        domainname=cfg.get("Domainname") or "",
        tty=bool(cfg.get("Tty")),
        open_stdin=bool(cfg.get("OpenStdin")),
        network_mode="host" if host_net else (netns_path or "none"),
        privileged=bool(hc.get("Privileged")),
        cap_add=list(hc.get("CapAdd") or []),
        cap_drop=list(hc.get("CapDrop") or []),
        readonly_rootfs=bool(hc.get("ReadonlyRootfs")),
        mounts=_with_user_mounts(etc_mounts, user_mounts or []),
        cgroups_path=cgroup_path(c),
        cgroupns_mode=hc.get("CgroupnsMode") or "host",
        memory=hc.get("Memory") or None,
        memory_swap=hc.get("MemorySwap") or None,
        memory_reservation=hc.get("MemoryReservation") or None,
        memory_swappiness=hc.get("MemorySwappiness"),
        nano_cpus=hc.get("NanoCpus") or None,
        cpu_shares=hc.get("CpuShares") or None,
        cpu_quota=hc.get("CpuQuota") or None,
        cpu_period=hc.get("CpuPeriod") or None,
        cpuset_cpus=hc.get("CpusetCpus") or None,
        cpuset_mems=hc.get("CpusetMems") or None,
        pids_limit=hc.get("PidsLimit") or None,
        blkio_weight=hc.get("BlkioWeight") or None,
        oom_kill_disable=hc.get("OomKillDisable") or None,
        sysctls=dict(hc.get("Sysctls") or {}),
        masked_paths=hc.get("MaskedPaths"),
        readonly_paths=hc.get("ReadonlyPaths"),
        ulimits=list(hc.get("Ulimits") or []),
        oom_score_adj=hc.get("OomScoreAdj") or 0,
        shm_size=hc.get("ShmSize") or None,
        init=bool(hc.get("Init")),
        init_path=spec.init_binary() if hc.get("Init") else "",
        **(namespaces or {}),
    )
    kwargs["devices"], kwargs["device_cgroup_rules"] = devices.custom_devices(list(hc.get("Devices") or []),
                                                                              list(hc.get("DeviceCgroupRules") or []))
    kwargs.update(_security_options(hc.get("SecurityOpt") or []))
    return spec.build_spec(spec.SpecOptions(**kwargs))


def cgroup_path(c: Container) -> str:
    """The container's cgroup: `<CgroupParent or /berth>/<id>`, as dockerd's cgroupfs driver names it."""
    parent = "/" + (c.host_config.get("CgroupParent") or "/berth").strip("/")
    return f"{parent.rstrip('/')}/{c.id}"


def _with_user_mounts(etc_mounts: list[dict[str, Any]], user: list[dict[str, Any]]) -> list[dict[str, Any]]:
    taken = {m["destination"] for m in user}
    return [m for m in etc_mounts if m["destination"] not in taken] + user


def _security_options(opts: list[str]) -> dict[str, Any]:
    """`--security-opt` values: seccomp=unconfined|<json>, no-new-privileges[=true]."""
    import json

    out: dict[str, Any] = {}
    for opt in opts:
        key, sep, val = opt.partition("=") if "=" in opt else opt.partition(":")
        if key == "no-new-privileges":
            out["no_new_privileges"] = (val or "true").lower() == "true"
        elif key == "seccomp":
            if val == "unconfined":
                out["seccomp"] = "unconfined"
            else:
                try:
                    out["seccomp"] = json.loads(val)
                except ValueError:
                    raise InvalidParameter(f"invalid seccomp profile: {val[:40]}") from None
        elif key in ("label", "apparmor", "systempaths"):
            if key == "systempaths" and val == "unconfined":
                out["masked_paths"] = []
                out["readonly_paths"] = []
        else:
            raise InvalidParameter(f"invalid --security-opt: {opt}")
    return out
