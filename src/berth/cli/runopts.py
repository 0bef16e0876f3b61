"""`run`/`create` flags as typed options, and their mapping to the `POST /containers/create` body.

Pure (the environment and file contents are passed in), so the mapping is unit-tested directly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from berth.cli import runflags
from berth.cli.runflags import OptionError, RunFlags, ram_in_bytes


@dataclass
class RunOptions:
    image: str
    command: list[str] = field(default_factory=list)
    name: str | None = None
    detach: bool = False
    rm: bool = False
    interactive: bool = False
    tty: bool = False
    env: list[str] = field(default_factory=list)
    env_file_lines: list[str] = field(default_factory=list)
    workdir: str | None = None
    user: str | None = None
    hostname: str | None = None
    labels: list[str] = field(default_factory=list)
    entrypoint: str | None = None
    network: str | None = None
    publish: list[str] = field(default_factory=list)
    publish_all: bool = False
    ip: str | None = None
    expose: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    tmpfs: list[str] = field(default_factory=list)
    volumes_from: list[str] = field(default_factory=list)
    restart: str | None = None
    privileged: bool = False
    init: bool = False
    cpus: str | None = None
    devices: list[str] = field(default_factory=list)
    sysctls: list[str] = field(default_factory=list)
    userns: str | None = None
    stop_signal: str | None = None
    stop_timeout: int | None = None
    attach_streams: list[str] = field(default_factory=list)
    health_cmd: str | None = None
    health_interval: str | None = None   # Go durations, as the flags take them
    health_timeout: str | None = None
    health_start_period: str | None = None
    health_start_interval: str | None = None
    health_retries: int = 0
    no_healthcheck: bool = False
    log_driver: str | None = None
    log_opts: list[str] = field(default_factory=list)
    flags: RunFlags = field(default_factory=RunFlags)  # resources, security, namespaces, DNS


def parse_env(items: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    """`KEY=VALUE` kept; a bare `KEY` takes the client's value, or is dropped when unset (as docker)."""
    out: list[str] = []
    for item in items:
        if not item:
            raise OptionError("invalid environment variable: empty")
        key, sep, _ = item.partition("=")
        if not key:
            raise OptionError(f"invalid environment variable: {item}")
        if sep:
            out.append(item)
        elif key in environ:
            out.append(f"{key}={environ[key]}")
    return out


def env_file_entries(text: str) -> list[str]:
    """Lines of an --env-file: blank lines and `#` comments skipped, leading whitespace trimmed."""
    entries = []
    for line in text.splitlines():
        line = line.lstrip()
        if line and not line.startswith("#"):
            entries.append(line)
    return entries


def parse_labels(items: Sequence[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in items:
        key, _, value = item.partition("=")
        labels[key] = value
    return labels


def parse_publish(specs: Sequence[str]) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, str]]]]:
    """`[ip:][host_port:]container_port[/proto]` (ranges allowed) into ExposedPorts and PortBindings."""
    exposed: dict[str, dict[str, Any]] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for spec in specs:
        rest, _, proto = spec.partition("/")
        proto = proto or "tcp"
        # An IPv6 address is bracketed: [::1]:8080:80
        ip = ""
        if rest.startswith("["):
            ip, _, rest = rest[1:].partition("]")
            rest = rest.lstrip(":")
        parts = rest.split(":")
        if len(parts) == 3:
            ip, host, ctr = parts
        elif len(parts) == 2:
            host, ctr = parts
        elif len(parts) == 1:
            host, ctr = "", parts[0]
        else:
            raise OptionError(f"invalid publish spec: {spec}")
        ctr_ports = _port_range(ctr, spec)
        host_ports = _port_range(host, spec) if host else []
        if host_ports and len(host_ports) != len(ctr_ports) and len(host_ports) != 1:
            raise OptionError(f"invalid ranges specified for container and host Ports: {spec}")
        for i, port in enumerate(ctr_ports):
            key = f"{port}/{proto}"
            exposed[key] = {}
            if len(host_ports) == len(ctr_ports):
                host_port = str(host_ports[i])
            elif host_ports:
                host_port = host  # one host range for a single container port: the daemon picks
            else:
                host_port = ""
            bindings.setdefault(key, []).append({"HostIp": ip, "HostPort": host_port})
    return exposed, bindings


def _port_range(text: str, spec: str) -> list[int]:
    start, _, end = text.partition("-")
    try:
        first = int(start)
        last = int(end) if end else first
    except ValueError:
        raise OptionError(f"invalid containerPort: {text or spec}") from None
    if not (0 < first <= last <= 65535):
        raise OptionError(f"invalid port range: {text}")
    return list(range(first, last + 1))


def parse_volumes(specs: Sequence[str]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """`-v SRC:DST[:MODE]` become Binds; an anonymous `-v DST` becomes a Volumes entry."""
    binds: list[str] = []
    anonymous: dict[str, dict[str, Any]] = {}
    for spec in specs:
        if ":" in spec:
            binds.append(spec)
        else:
            anonymous[spec] = {}
    return binds, anonymous


_MOUNT_KEYS = {"source": "src", "src": "src", "target": "dst", "destination": "dst", "dst": "dst",
               "readonly": "ro", "ro": "ro"}


def _go_bool(value: str, spec: str) -> bool:
    low = value.lower()
    if low in ("", "1", "t", "true"):
        return True
    if low in ("0", "f", "false"):
        return False
    raise OptionError(f'invalid argument "{spec}" for "--mount" flag: invalid value for readonly: {value}')


def parse_mount(spec: str) -> dict[str, Any]:
    """`--mount type=bind,source=/a,target=/b,readonly,...` into a HostConfig.Mounts entry."""
    m: dict[str, Any] = {"Type": "volume"}
    bind: dict[str, Any] = {}
    vol: dict[str, Any] = {}
    tmpfs: dict[str, Any] = {}
    for field_ in spec.split(","):
        key, sep, value = field_.partition("=")
        key = key.strip().lower()
        canon = _MOUNT_KEYS.get(key, key)
        if not sep and key in ("readonly", "ro", "volume-nocopy", "bind-nonrecursive"):
            value, sep = "true", "="  # a bare boolean key means true
        if canon == "ro":
            m["ReadOnly"] = _go_bool(value, spec)
        elif not sep:
            raise OptionError(f'invalid argument "{spec}" for "--mount" flag: invalid field \'{field_}\' '
                              "must be a key=value pair")
        elif canon == "type":
            m["Type"] = value
        elif canon == "src":
            m["Source"] = value
        elif canon == "dst":
            m["Target"] = value
        elif key == "bind-propagation":
            bind["Propagation"] = value
        elif key == "bind-nonrecursive":
            bind["NonRecursive"] = _go_bool(value, spec)
        elif key == "volume-nocopy":
            vol["NoCopy"] = _go_bool(value, spec)
        elif key == "volume-label":
            k, _, v = value.partition("=")
            vol.setdefault("Labels", {})[k] = v
        elif key == "volume-driver":
            vol.setdefault("DriverConfig", {})["Name"] = value
        elif key == "volume-opt":
            k, _, v = value.partition("=")
            vol.setdefault("DriverConfig", {}).setdefault("Options", {})[k] = v
        elif key == "volume-subpath":
            vol["Subpath"] = value
        elif key == "tmpfs-size":
            tmpfs["SizeBytes"] = ram_in_bytes(value)
        elif key == "tmpfs-mode":
            try:
                tmpfs["Mode"] = int(value, 8)
            except ValueError:
                raise OptionError(f'invalid argument "{spec}" for "--mount" flag: invalid tmpfs-mode') from None
        elif key == "consistency":
            m["Consistency"] = value
        else:
            raise OptionError(f'invalid argument "{spec}" for "--mount" flag: unexpected key \'{key}\' in '
                              f"'{field_}'")
    if m["Type"] == "bind" and bind:
        m["BindOptions"] = bind
    if m["Type"] == "volume" and vol:
        m["VolumeOptions"] = vol
    if m["Type"] == "tmpfs" and tmpfs:
        m["TmpfsOptions"] = tmpfs
    if not m.get("Target"):
        raise OptionError(f'invalid argument "{spec}" for "--mount" flag: target is required')
    return m


def parse_tmpfs(specs: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for spec in specs:
        path, _, opts = spec.partition(":")
        out[path] = opts
    return out


def parse_cpus(value: str) -> int:
    """`--cpus 1.5` as NanoCpus."""
    try:
        cpus = float(value)
    except ValueError:
        raise OptionError(f'invalid argument "{value}" for "--cpus" flag: failed to parse {value} as a rational '
                          "number") from None
    return int(round(cpus * 10**9))


def parse_device(spec: str) -> dict[str, str]:
    """`--device SRC[:DST][:PERMS]`, as the docker CLI reads it."""
    parts = spec.split(":")
    src, dst, perms = parts[0], "", "rwm"
    if len(parts) == 3:
        dst, perms = parts[1], parts[2]
    elif len(parts) == 2:
        if _device_mode(parts[1]):
            perms = parts[1]
        else:
            dst = parts[1]
    elif len(parts) != 1 or not src:
        raise OptionError(f"invalid device specification: {spec}")
    if not _device_mode(perms):
        raise OptionError(f"invalid device mode: {perms}")
    return {"PathOnHost": src, "PathInContainer": dst or src, "CgroupPermissions": perms}


def _device_mode(mode: str) -> bool:
    return bool(mode) and len(mode) <= 3 and all(ch in "rwm" for ch in mode) and len(set(mode)) == len(mode)


# docker's opts.ValidateSysctl: the IPC namespace's kernel.* keys, fs.mqueue.* and net.*
_SYSCTL_KEYS = {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"}


def parse_sysctls(items: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not (key in _SYSCTL_KEYS or key.startswith(("fs.mqueue.", "net."))):
            raise OptionError(f'invalid argument "{item}" for "--sysctl" flag: sysctl \'{item}\' is not allowed')
        out[key] = value
    return out


_DURATION_UNITS = {"ns": 1, "us": 1000, "µs": 1000, "μs": 1000, "ms": 10**6, "s": 10**9, "m": 60 * 10**9,
                   "h": 3600 * 10**9}
_DURATION_PART = re.compile(r"(\d*\.?\d*)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str, flag: str) -> int:
    """Go's time.ParseDuration (`1s`, `500ms`, `1m30s`, `-2s`, `0`) in nanoseconds."""
    bad = OptionError(f'invalid argument "{text}" for "{flag}" flag: time: invalid duration "{text}"')
    body = text[1:] if text[:1] in "+-" else text
    if body == "0":
        return 0
    total = 0.0
    pos = 0
    while pos < len(body):
        m = _DURATION_PART.match(body, pos)
        if not m or m.group(1) in ("", "."):
            raise bad
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if not body:
        raise bad
    return -int(total) if text.startswith("-") else int(total)


def healthcheck(opts: RunOptions) -> dict[str, Any] | None:
    """The create body's Healthcheck for the --health-* flags, as the docker CLI builds it."""
    durations = {key: parse_duration(value, flag) if value else 0 for key, value, flag in (
        ("Interval", opts.health_interval, "--health-interval"),
        ("Timeout", opts.health_timeout, "--health-timeout"),
        ("StartPeriod", opts.health_start_period, "--health-start-period"),
        ("StartInterval", opts.health_start_interval, "--health-start-interval"))}
    wanted = bool(opts.health_cmd) or any(durations.values()) or opts.health_retries != 0
    if opts.no_healthcheck:
        if wanted:
            raise OptionError("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    if not wanted:
        return None
    for key, flag in (("Interval", "--health-interval"), ("Timeout", "--health-timeout"),
                      ("StartPeriod", "--health-start-period"), ("StartInterval", "--health-start-interval")):
        if durations[key] < 0:
            raise OptionError(f"{flag} cannot be negative")
    if opts.health_retries < 0:
        raise OptionError("--health-retries cannot be negative")
    test = ["CMD-SHELL", opts.health_cmd] if opts.health_cmd else None
    fields = {"Test": test, **durations, "Retries": opts.health_retries}
    return {k: v for k, v in fields.items() if v}  # the CLI's omitempty


def log_config(opts: RunOptions) -> dict[str, Any] | None:
    """HostConfig.LogConfig for --log-driver and --log-opt (`key=value`; a bare key is empty)."""
    if not opts.log_driver and not opts.log_opts:
        return None
    config = {}
    for item in opts.log_opts:
        key, _, value = item.partition("=")
        config[key] = value
    if opts.log_driver == "none" and config:
        raise OptionError("invalid logging opts for driver none")
    return {"Type": opts.log_driver or "", "Config": config}


def parse_restart(policy: str | None) -> dict[str, Any] | None:
    if not policy:
        return None
    name, _, count = policy.partition(":")
    if name not in ("no", "always", "on-failure", "unless-stopped"):
        raise OptionError(f"invalid restart policy {name}")
    if count and name != "on-failure":
        raise OptionError(f"maximum retry count cannot be used with restart policy '{name}'")
    return {"Name": name, "MaximumRetryCount": int(count) if count else 0}


def create_body(opts: RunOptions, environ: Mapping[str, str]) -> dict[str, Any]:
    """The `POST /containers/create` body the docker CLI would send for these flags."""
    attached = not opts.detach
    attach = set(opts.attach_streams)
    exposed, port_bindings = parse_publish(opts.publish)
    for port in opts.expose:
        exposed.setdefault(port if "/" in port else f"{port}/tcp", {})
    binds, anonymous = parse_volumes(opts.volumes)
    body: dict[str, Any] = {
        "Hostname": opts.hostname or "",
        "User": opts.user or "",
        "AttachStdin": attached and opts.interactive if not attach else "stdin" in attach,
        "AttachStdout": attached if not attach else "stdout" in attach,
        "AttachStderr": attached if not attach else "stderr" in attach,
        "Tty": opts.tty,
        "OpenStdin": opts.interactive,
        # A foreground -i run ends the container's stdin when ours ends, as docker does.
        "StdinOnce": opts.interactive and attached,
        "Env": parse_env(opts.env_file_lines, environ) + parse_env(opts.env, environ),
        "Cmd": list(opts.command) or None,
        "Image": opts.image,
        "WorkingDir": opts.workdir or "",
        "Labels": parse_labels(opts.labels),
    }
    if opts.flags.domainname:
        body["Domainname"] = opts.flags.domainname
    if opts.flags.mac_address:
        # API 1.41 takes the address in Config (per-endpoint addresses came with 1.44)
        body["MacAddress"] = runflags.validate_mac(opts.flags.mac_address)
    if opts.entrypoint is not None:
        body["Entrypoint"] = [opts.entrypoint] if opts.entrypoint else [""]
    if exposed:
        body["ExposedPorts"] = exposed
    if anonymous:
        body["Volumes"] = anonymous
    if opts.stop_signal:
        body["StopSignal"] = opts.stop_signal
    if opts.stop_timeout is not None:
        body["StopTimeout"] = opts.stop_timeout
    host_config: dict[str, Any] = {
        "NetworkMode": opts.network or "default",
        "AutoRemove": opts.rm,
        "Privileged": opts.privileged,
    }
    if binds:
        host_config["Binds"] = binds
    if opts.mounts:
        host_config["Mounts"] = [parse_mount(m) for m in opts.mounts]
    if opts.tmpfs:
        host_config["Tmpfs"] = parse_tmpfs(opts.tmpfs)
    if opts.volumes_from:
        host_config["VolumesFrom"] = list(opts.volumes_from)
    if port_bindings:
        host_config["PortBindings"] = port_bindings
    if opts.publish_all:
        host_config["PublishAllPorts"] = True
    endpoint: dict[str, Any] = {"IPAMConfig": {"IPv4Address": opts.ip}} if opts.ip else {}
    runflags.add_to_endpoint(opts.flags, opts.network or "default", endpoint)
    if endpoint:
        body["NetworkingConfig"] = {"EndpointsConfig": {opts.network or "default": endpoint}}
    runflags.add_to_host_config(opts.flags, host_config)
    restart = parse_restart(opts.restart)
    if restart:
        if opts.rm and restart["Name"] != "no":
            raise OptionError("Conflicting options: --restart and --rm")
        host_config["RestartPolicy"] = restart
    if opts.init:
        host_config["Init"] = True
    if opts.cpus:
        host_config["NanoCpus"] = parse_cpus(opts.cpus)
    if opts.devices:
        host_config["Devices"] = [parse_device(d) for d in opts.devices]
    if opts.sysctls:
        host_config["Sysctls"] = parse_sysctls(opts.sysctls)
    if opts.userns is not None:
        if opts.userns not in ("", "host"):
            raise OptionError("--userns: invalid USER mode")
        host_config["UsernsMode"] = opts.userns
    health = healthcheck(opts)
    if health is not None:
        body["Healthcheck"] = health
    logging = log_config(opts)
    if logging is not None:
        host_config["LogConfig"] = logging
    body["HostConfig"] = host_config
    return body


def image_with_tag(image: str) -> str:
    """`busybox` -> `busybox:latest`, for docker's "Unable to find image" message."""
    if "@" in image:
        return image
    last = image.rsplit("/", 1)[-1]
    return image if ":" in last else image + ":latest"


def start_error_status(message: str) -> int:
    """docker run's status when start fails: 127 for a missing command, 126 if not executable."""
    lowered = message.lower()
    if "executable file not found" in lowered or "no such file or directory" in lowered:
        return 127
    if "permission denied" in lowered:
        return 126
    return 125
