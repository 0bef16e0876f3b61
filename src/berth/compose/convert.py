"""A service as Engine API `POST /containers/create` bodies, and the labels compose writes.

Pure: the executor passes in what only the engine knows (image ID, container IDs for
`network_mode: service:x`).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from berth.compose.labels import (  # noqa: F401  (re-exported: callers know them as convert.LABEL_*)
    COMPOSE_VERSION,
    LABEL_DEPENDS,
    LABEL_FILES,
    LABEL_HASH,
    LABEL_IMAGE,
    LABEL_NETWORK,
    LABEL_NUMBER,
    LABEL_ONEOFF,
    LABEL_PROJECT,
    LABEL_SERVICE,
    LABEL_VERSION,
    LABEL_VOLUME,
    LABEL_WORKDIR,
)
from berth.compose.model import Project, Service

SWARM_CONSTRAINTS = "com.docker.swarm.constraints"  # deploy.placement.constraints, for a cluster manager

# Fields that do not change what a container is: scaling and build inputs (the image ID covers them).
_NOT_HASHED = {"scale", "build", "pull_policy", "profiles", "depends_on", "develop"}


def config_hash(svc: Service, image_id: str) -> str:
    """sha256 of the service's normalised config (minus scaling) and the image it runs."""
    conf = {k: v for k, v in svc.config.items() if k not in _NOT_HASHED}
    deploy = dict(conf.get("deploy") or {})
    deploy.pop("replicas", None)
    if deploy:
        conf["deploy"] = deploy
    else:
        conf.pop("deploy", None)
    blob = json.dumps({"service": conf, "image": image_id}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def container_name(project: Project, svc: Service, number: int) -> str:
    return svc.config.get("container_name") or f"{project.name}-{svc.name}-{number}"


def labels(project: Project, svc: Service, number: int, hash_: str, oneoff: bool = False) -> dict[str, str]:
    out = {str(k): str(v) for k, v in (svc.config.get("labels") or {}).items()}
    out.update({
        LABEL_PROJECT: project.name,
        LABEL_SERVICE: svc.name,
        LABEL_NUMBER: str(number),
        LABEL_ONEOFF: "True" if oneoff else "False",
        LABEL_HASH: hash_,
        LABEL_WORKDIR: str(project.working_dir),
        LABEL_FILES: ",".join(project.config_files),
        LABEL_VERSION: COMPOSE_VERSION,
        LABEL_IMAGE: svc.image_name(project.name),
        LABEL_DEPENDS: ",".join(f"{d.service}:{d.condition}:{str(d.restart).lower()}" for d in svc.depends_on),
    })
    constraints = ((svc.config.get("deploy") or {}).get("placement") or {}).get("constraints") or []
    if constraints:  # where a cluster manager reads placement from (classic Swarm's label); engines ignore it
        out[SWARM_CONSTRAINTS] = json.dumps([str(x) for x in constraints])
    return out


_UNITS = {"b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "g": 1 << 30, "gb": 1 << 30}


def parse_bytes(value: Any) -> int:
    if isinstance(value, int):
        return value
    m = re.fullmatch(r"\s*([0-9.]+)\s*([a-zA-Z]*)\s*", str(value))
    if not m or m.group(2).lower() not in {**_UNITS, "": 1}:
        raise ValueError(f"invalid size {value!r}")
    return int(float(m.group(1)) * _UNITS.get(m.group(2).lower(), 1))


def parse_duration(value: Any) -> float:
    """`1m30s`, `10s`, `500ms` or a number of seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    total = 0.0
    for num, unit in re.findall(r"([0-9.]+)(ms|us|ns|h|m|s)?", str(value)):
        total += float(num) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9, "": 1}[unit]
    return total


def flag(value: Any) -> bool:
    """A boolean field, which interpolation may have turned into a string."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1", "on")
    return bool(value)


def _restart(policy: str | None) -> dict[str, Any]:
    if not policy or policy == "no":
        return {"Name": "no"}
    name, _, count = policy.partition(":")
    out: dict[str, Any] = {"Name": name}
    if count:
        out["MaximumRetryCount"] = int(count)
    return out


def create_body(project: Project, svc: Service, number: int, hash_: str,
                network_mode: str | None = None, oneoff: bool = False) -> dict[str, Any]:
    c = svc.config
    env = [k if v is None else f"{k}={v}" for k, v in (c.get("environment") or {}).items() if v is not None]
    exposed: dict[str, dict[str, Any]] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for p in c.get("ports") or []:
        key = f"{p['target']}/{p.get('protocol', 'tcp')}"
        exposed[key] = {}
        bindings.setdefault(key, []).append({"HostIp": p.get("host_ip", ""), "HostPort": str(p.get("published") or "")})
    for e in c.get("expose") or []:
        port, _, proto = str(e).partition("/")
        exposed[f"{port}/{proto or 'tcp'}"] = {}
    mounts: list[dict[str, Any]] = []
    for v in c.get("volumes") or []:
        mount: dict[str, Any] = {"Type": v["type"], "Target": v["target"], "ReadOnly": flag(v.get("read_only"))}
        if v["type"] == "volume":
            source = v.get("source")
            if source:
                mount["Source"] = project.volumes[source].name
            mount["VolumeOptions"] = {"NoCopy": bool((v.get("volume") or {}).get("nocopy"))}
        elif v["type"] == "bind":
            mount["Source"] = v["source"]
            if (v.get("bind") or {}).get("propagation"):
                mount["BindOptions"] = {"Propagation": v["bind"]["propagation"]}
        elif v["type"] == "tmpfs":
            size = (v.get("tmpfs") or {}).get("size")
            if size is not None:
                mount["TmpfsOptions"] = {"SizeBytes": parse_bytes(size)}
        mounts.append(mount)
    mounts.extend(file_mounts(project, svc))
    tmpfs = {}
    for t in c.get("tmpfs") or []:
        path, _, opts = str(t).partition(":")
        tmpfs[path] = opts
    limits = ((c.get("deploy") or {}).get("resources") or {}).get("limits") or {}
    host: dict[str, Any] = {
        "Mounts": mounts,
        "PortBindings": bindings,
        "RestartPolicy": _restart(c.get("restart")),
        "CapAdd": c.get("cap_add") or None,
        "CapDrop": c.get("cap_drop") or None,
        "SecurityOpt": c.get("security_opt") or None,
        "Privileged": flag(c.get("privileged")),
        "ReadonlyRootfs": flag(c.get("read_only")),
        "Tmpfs": tmpfs or None,
        "Ulimits": [{"Name": k, "Soft": int(v["soft"]), "Hard": int(v["hard"])}
                    for k, v in (c.get("ulimits") or {}).items()] or None,
        "Sysctls": {k: str(v) for k, v in (c.get("sysctls") or {}).items()} or None,
        "Init": None if c.get("init") is None else flag(c.get("init")),
        "ExtraHosts": [f"{h}:{ip}" for h, ip in (c.get("extra_hosts") or {}).items()] or None,
        "Dns": c.get("dns") or None,
        "DnsSearch": c.get("dns_search") or None,
        "DnsOptions": c.get("dns_opt") or None,
        "NetworkMode": network_mode or "",
    }
    for key, wire in (("pid", "PidMode"), ("ipc", "IpcMode"), ("cgroup_parent", "CgroupParent"),
                      ("userns_mode", "UsernsMode"), ("runtime", "Runtime")):
        if c.get(key):
            host[wire] = str(c[key])
    for key, wire in (("cpu_shares", "CpuShares"), ("oom_score_adj", "OomScoreAdj"), ("pids_limit", "PidsLimit")):
        if c.get(key) is not None:
            host[wire] = int(c[key])
    if c.get("cpuset"):
        host["CpusetCpus"] = str(c["cpuset"])
    if c.get("group_add"):
        host["GroupAdd"] = [str(g) for g in c["group_add"]]
    if c.get("shm_size") is not None:
        host["ShmSize"] = parse_bytes(c["shm_size"])
    if c.get("mem_reservation") is not None:
        host["MemoryReservation"] = parse_bytes(c["mem_reservation"])
    if c.get("logging"):
        host["LogConfig"] = {"Type": c["logging"].get("driver") or "json-file",
                             "Config": {str(k): str(v) for k, v in (c["logging"].get("options") or {}).items()}}
    if limits.get("cpus") is not None:
        host["NanoCpus"] = int(float(limits["cpus"]) * 1e9)
    if limits.get("memory") is not None:
        host["Memory"] = parse_bytes(limits["memory"])
    if limits.get("pids") is not None:
        host["PidsLimit"] = int(limits["pids"])
    if c.get("mem_limit") is not None:
        host["Memory"] = parse_bytes(c["mem_limit"])
    body: dict[str, Any] = {
        # By name, as docker compose does, so `ps` shows it; the config hash holds the image ID.
        "Image": svc.image_name(project.name),
        "Env": env,
        "Cmd": c.get("command"),
        "Entrypoint": c.get("entrypoint"),
        "Labels": labels(project, svc, number, hash_, oneoff),
        "ExposedPorts": exposed or None,
        "User": c.get("user") or "",
        "WorkingDir": c.get("working_dir") or "",
        "Hostname": c.get("hostname") or "",
        "Domainname": c.get("domainname") or "",
        "StopSignal": c.get("stop_signal"),
        "Tty": flag(c.get("tty")),
        "OpenStdin": flag(c.get("stdin_open")),
        "HostConfig": {k: v for k, v in host.items() if v is not None},
    }
    health = healthcheck(c.get("healthcheck"))
    if health is not None:
        body["Healthcheck"] = health
    if c.get("stop_grace_period") is not None:
        body["StopTimeout"] = int(parse_duration(c["stop_grace_period"]))
    return {k: v for k, v in body.items() if v is not None}


def file_mounts(project: Project, svc: Service) -> list[dict[str, Any]]:
    """File-based secrets (at /run/secrets/<target>) and configs (at /<source> or their target) as
    read-only binds; secrets from the environment or external stores are not supported yet."""
    from berth.compose.errors import ComposeError

    out = []
    for section, declared in (("secrets", project.secrets), ("configs", project.configs)):
        for ref in svc.config.get(section) or []:
            ref = {"source": ref} if isinstance(ref, str) else ref
            source = ref["source"]
            spec = declared.get(source) or {}
            if not spec.get("file"):
                raise ComposeError(f"service {svc.name!r}: {section[:-1]} {source!r} is not file-based "
                                   "(only `file:` secrets and configs are supported)")
            target = str(ref.get("target") or source)
            if not target.startswith("/"):
                target = f"/run/secrets/{target}" if section == "secrets" else f"/{target}"
            out.append({"Type": "bind", "Source": spec["file"], "Target": target, "ReadOnly": True})
    return out


def healthcheck(hc: dict[str, Any] | None) -> dict[str, Any] | None:
    """The Engine API's HealthConfig (durations in nanoseconds); `disable` is docker's `NONE` test."""
    if not hc:
        return None
    if flag(hc.get("disable")):
        return {"Test": ["NONE"]}
    out: dict[str, Any] = {}
    test = hc.get("test")
    if test is not None:
        out["Test"] = ["CMD-SHELL", test] if isinstance(test, str) else [str(t) for t in test]
    for key, wire in (("interval", "Interval"), ("timeout", "Timeout"), ("start_period", "StartPeriod"),
                      ("start_interval", "StartInterval")):
        if hc.get(key) is not None:
            out[wire] = int(parse_duration(hc[key]) * 1e9)
    if hc.get("retries") is not None:
        out["Retries"] = int(hc["retries"])
    return out


def endpoint_config(svc: Service, net_key: str, container: str) -> dict[str, Any]:
    conf = svc.networks.get(net_key) or {}
    aliases = [svc.name, *(conf.get("aliases") or [])]
    out: dict[str, Any] = {"Aliases": aliases}
    ipam = {}
    if conf.get("ipv4_address"):
        ipam["IPv4Address"] = conf["ipv4_address"]
    if conf.get("ipv6_address"):
        ipam["IPv6Address"] = conf["ipv6_address"]
    if ipam:
        out["IPAMConfig"] = ipam
    return out
