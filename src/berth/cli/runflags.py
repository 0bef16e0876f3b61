"""The resource, security, namespace and DNS flags of `run`/`create`: parsed as the docker CLI
parses them (with its error wording) and added to the `POST /containers/create` body.

Pure apart from reading a seccomp profile file, which docker's CLI inlines into the request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


class OptionError(ValueError):
    """A flag value docker would reject before talking to the daemon."""


@dataclass
class RunFlags:
    """Flag values as typed (strings), so that a bad number gets docker's message, not click's."""

    memory: str | None = None
    memory_swap: str | None = None
    memory_reservation: str | None = None
    memory_swappiness: str | None = None
    kernel_memory: str | None = None
    oom_kill_disable: bool = False
    oom_score_adj: str | None = None
    cpu_shares: str | None = None
    cpu_period: str | None = None
    cpu_quota: str | None = None
    cpuset_cpus: str | None = None
    cpuset_mems: str | None = None
    blkio_weight: str | None = None
    pids_limit: str | None = None
    shm_size: str | None = None
    ulimits: list[str] = field(default_factory=list)
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    security_opts: list[str] = field(default_factory=list)
    read_only: bool = False
    group_add: list[str] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    add_hosts: list[str] = field(default_factory=list)
    domainname: str | None = None
    mac_address: str | None = None
    ip6: str | None = None
    network_aliases: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    pid: str | None = None
    ipc: str | None = None
    uts: str | None = None
    cgroupns: str | None = None
    cgroup_parent: str | None = None
    runtime: str | None = None
    isolation: str | None = None
    cidfile: str | None = None
    device_cgroup_rules: list[str] = field(default_factory=list)
    storage_opts: list[str] = field(default_factory=list)


def flag_error(flag: str, value: str, reason: str) -> OptionError:
    """pflag's wording for a value its type rejects."""
    return OptionError(f'invalid argument "{value}" for "{flag}" flag: {reason}')


# --- numbers and sizes ------------------------------------------------------------------------

_INT64 = 1 << 63
_GO_INT = re.compile(r"[+-]?\d+")
_GO_FLOAT = re.compile(r"[+-]?(?=\.?\d)(\d(_?\d)*)?(\.(\d(_?\d)*)?)?([eE][+-]?\d(_?\d)*)?")


def go_int(text: str, flag: str, unsigned_bits: int = 0) -> int:
    """strconv.ParseInt (int64), or ParseUint with `unsigned_bits`, as pflag's number flags."""
    func = "ParseUint" if unsigned_bits else "ParseInt"
    if not _GO_INT.fullmatch(text) or (unsigned_bits and text[0] in "+-"):
        raise flag_error(flag, text, f'strconv.{func}: parsing "{text}": invalid syntax')
    value = int(text)
    top = 1 << unsigned_bits if unsigned_bits else _INT64
    if not (-_INT64 if not unsigned_bits else 0) <= value < top:
        raise flag_error(flag, text, f'strconv.{func}: parsing "{text}": value out of range')
    return value


_BINARY_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def ram_in_bytes(text: str) -> int:
    """go-units' RAMInBytes: a number, then an optional space and k/m/g/t/p (binary multiples,
    any case) optionally followed by `b` or `ib`; or a `b` suffix alone."""
    sep = max(text.rfind(ch) for ch in "0123456789. ")
    if sep < 0:
        raise OptionError(f"invalid size: '{text}'")
    num, suffix = (text[:sep + 1], text[sep + 1:]) if text[sep] != " " else (text[:sep], text[sep + 1:])
    if not _GO_FLOAT.fullmatch(num):
        raise OptionError(f'strconv.ParseFloat: parsing "{num}": invalid syntax')
    size = float(num.replace("_", ""))
    if size in (float("inf"), float("-inf")):
        raise OptionError(f'strconv.ParseFloat: parsing "{num}": value out of range')
    if size < 0:
        raise OptionError(f"invalid size: '{text}'")
    if suffix:
        low = suffix.lower()
        if len(suffix) > 3:
            raise OptionError(f"invalid suffix: '{suffix}'")
        if low[0] == "b":
            if len(low) > 1:
                raise OptionError(f"invalid suffix: '{low}'")
        elif low[0] not in _BINARY_UNITS or low[1:] not in ("", "b", "ib"):
            raise OptionError(f"invalid suffix: '{low}'")
        else:
            size *= _BINARY_UNITS[low[0]]
    # Go's float->int64 conversion of an overflow gives the minimum int64 on amd64
    return int(size) if size < _INT64 else -_INT64


def size_flag(text: str, flag: str) -> int:
    try:
        return ram_in_bytes(text)
    except OptionError as exc:
        raise flag_error(flag, text, str(exc)) from None


def swap_flag(text: str) -> int:
    """--memory-swap: a size, or -1 for unlimited swap."""
    return -1 if text == "-1" else size_flag(text, "--memory-swap")


# --- ulimits ----------------------------------------------------------------------------------

ULIMIT_NAMES = frozenset({"core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile",
                          "nproc", "rss", "rtprio", "rttime", "sigpending", "stack"})


def parse_ulimit(spec: str) -> dict[str, Any]:
    """`name=soft[:hard]` (go-units' ParseUlimit); -1 means unlimited."""
    def bad(reason: str) -> OptionError:
        return flag_error("--ulimit", spec, reason)

    name, sep, limits = spec.partition("=")
    if not sep:
        raise bad(f"invalid ulimit argument: {spec}")
    if name not in ULIMIT_NAMES:
        raise bad(f"invalid ulimit type: {name}")
    values = limits.split(":")
    if len(values) > 2:
        raise bad(f"too many limit value arguments - {limits}, can only have up to two, `soft[:hard]`")
    numbers = []
    for v in values:
        if not _GO_INT.fullmatch(v):
            raise bad(f'strconv.ParseInt: parsing "{v}": invalid syntax')
        if not -_INT64 <= int(v) < _INT64:
            raise bad(f'strconv.ParseInt: parsing "{v}": value out of range')
        numbers.append(int(v))
    soft, hard = numbers[0], numbers[-1]
    if hard != -1:
        if soft == -1:
            raise bad(f"ulimit soft limit must be less than or equal to hard limit: soft: -1 (unlimited), "
                      f"hard: {hard}")
        if soft > hard:
            raise bad(f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")
    return {"Name": name, "Hard": hard, "Soft": soft}


def parse_ulimits(specs: Sequence[str]) -> list[dict[str, Any]]:
    """One entry per name (the last flag wins), sorted by name as the docker CLI sends them."""
    by_name = {u["Name"]: u for u in map(parse_ulimit, specs)}
    return [by_name[name] for name in sorted(by_name)]


# --- security ---------------------------------------------------------------------------------

def normalize_caps(caps: Sequence[str]) -> list[str]:
    """The docker CLI's spelling: upper case with a CAP_ prefix (ALL stays ALL), sorted, no repeats."""
    out = set()
    for cap in caps:
        cap = cap.strip().upper()
        if cap and cap != "ALL" and not cap.startswith("CAP_"):
            cap = "CAP_" + cap
        out.add(cap)
    return sorted(out)


def _go_json_error(doc: str, exc: json.JSONDecodeError) -> str:
    """Go's encoding/json wording for the commonest mistakes; Python's for the rest."""
    if exc.pos >= len(doc.rstrip()):
        return "unexpected end of JSON input"
    if exc.msg == "Expecting value":
        return f"invalid character '{doc[exc.pos]}' looking for beginning of value"
    return str(exc)


def json_compact(text: str) -> str:
    """Go's json.Compact: the document unchanged except for whitespace between tokens."""
    out, in_string, escaped = [], False, False
    for ch in text:
        if in_string:
            out.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
            out.append(ch)
        elif ch not in " \t\r\n":
            out.append(ch)
    return "".join(out)


def parse_security_opts(opts: Sequence[str]) -> tuple[list[str], bool]:
    """--security-opt as the docker CLI sends it: a `seccomp=<file>` profile is read and inlined
    (compacted); `systempaths=unconfined` is dropped and reported as True (no masked/readonly
    paths), as the CLI handles it itself."""
    out: list[str] = []
    unconfined_paths = False
    for opt in opts:
        key, sep, value = opt.partition("=")
        if not sep and key != "no-new-privileges":
            key, sep, value = opt.partition(":")
        if (not sep or not value) and key != "no-new-privileges":
            raise OptionError(f'Invalid --security-opt: "{opt}"')
        if key == "seccomp" and value not in ("builtin", "unconfined"):
            try:
                with open(value, encoding="utf-8") as fh:
                    profile = fh.read()
            except OSError as exc:
                reason = (exc.strerror or str(exc)).lower()
                raise OptionError(f"opening seccomp profile ({value}) failed: open {value}: {reason}") from None
            try:
                json.loads(profile)
            except json.JSONDecodeError as exc:
                raise OptionError(f"compacting json for seccomp profile ({value}) failed: "
                                  f"{_go_json_error(profile, exc)}") from None
            opt = "seccomp=" + json_compact(profile)
        if opt == "systempaths=unconfined":
            unconfined_paths = True
            continue
        out.append(opt)
    return out, unconfined_paths


# --- networking -------------------------------------------------------------------------------

def validate_ip(text: str) -> str | None:
    """Go's net.ParseIP(...).String() after trimming spaces: the canonical form, or None."""
    import ipaddress  # only when an address flag is given: `run` starts lean

    try:
        addr = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.scope_id:
            return None
        if addr.ipv4_mapped:
            return str(addr.ipv4_mapped)
    return str(addr)


def parse_dns(servers: Sequence[str]) -> list[str]:
    out = []
    for server in servers:
        ip = validate_ip(server)
        if ip is None:
            raise flag_error("--dns", server, f"IP address is not correctly formatted: {server}")
        out.append(ip)
    return out


_DOMAIN = re.compile(r"^((?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9\-]*[a-zA-Z0-9])"
                     r"(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9\-]*[a-zA-Z0-9]))*)\.?\s*$")


def parse_dns_search(domains: Sequence[str]) -> list[str]:
    """docker's ValidateDNSSearch: `.` (no search list) or a domain name with a letter in it."""
    out = []
    for domain in domains:
        trimmed = domain.strip(" ")
        if trimmed == ".":
            out.append(trimmed)
            continue
        m = _DOMAIN.match(trimmed)
        if not re.search("[a-zA-Z]", trimmed) or not m or len(m.group(1)) >= 255:
            raise flag_error("--dns-search", domain, f"{trimmed} is not a valid domain")
        out.append(m.group(1))
    return out


def parse_extra_host(spec: str) -> str:
    """`name:ip`, `name=ip`, `name=[v6]` or `name:host-gateway`, sent as `name:ip`."""
    name, sep, ip = spec.partition("=")
    if not sep:
        name, sep, ip = spec.partition(":")
    if not sep or not name or ":" in name:
        raise flag_error("--add-host", spec, f'bad format for add-host: "{spec}"')
    if ip != "host-gateway":
        if len(ip) > 2 and ip[0] == "[" and ip[-1] == "]":
            ip = ip[1:-1]
        if validate_ip(ip) is None:
            raise flag_error("--add-host", spec, f'invalid IP address in add-host: "{ip}"')
    return f"{name}:{ip}"  # the address as typed, not canonicalised, as docker keeps it


def validate_link(spec: str) -> str:
    if not spec:
        raise flag_error("--link", spec, "empty string specified for links")
    if spec.count(":") > 1:
        raise flag_error("--link", spec, f"bad format for links: {spec}")
    return spec


_MAC = re.compile(r"([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}|([0-9a-fA-F]{2}[:-]){7}[0-9a-fA-F]{2}"
                  r"|([0-9a-fA-F]{2}[:-]){19}[0-9a-fA-F]{2}|([0-9a-fA-F]{4}\.){2,9}[0-9a-fA-F]{4}")


def validate_mac(mac: str) -> str:
    """Go's net.ParseMAC forms (EUI-48, EUI-64, 20-octet), with one separator throughout."""
    text = mac.strip()
    ok = bool(_MAC.fullmatch(text)) and len(set(re.sub("[0-9a-fA-F]", "", text))) == 1
    if ok and "." in text:
        ok = len(text.split(".")) in (3, 4, 10)
    if not ok:
        raise OptionError(f"{mac} is not a valid mac address")
    return mac


def user_defined_network(mode: str) -> bool:
    return mode not in ("default", "bridge", "host", "none") and not mode.startswith("container:")


# --- namespaces and the rest ------------------------------------------------------------------

def check_modes(f: RunFlags) -> None:
    pid = f.pid or ""
    if pid not in ("", "host") and not (pid.startswith("container:") and len(pid) > len("container:")):
        raise OptionError("--pid: invalid PID mode")
    if (f.uts or "") not in ("", "host"):
        raise OptionError("--uts: invalid UTS mode")
    if (f.cgroupns or "") not in ("", "host", "private"):
        raise OptionError("--cgroupns: invalid CGROUP mode")


_DEVICE_CGROUP_RULE = re.compile(r"[acb] ([0-9]+|\*):([0-9]+|\*) [rwm]{1,3}")


def parse_storage_opts(items: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise OptionError("invalid storage option")
        out[key] = value
    return out


def swappiness(text: str) -> int:
    value = go_int(text, "--memory-swappiness")
    if value != -1 and not 0 <= value <= 100:
        raise OptionError(f"invalid value: {value}. Valid memory swappiness range is 0-100")
    return value


def add_to_host_config(f: RunFlags, hc: dict[str, Any]) -> None:
    """HostConfig fields for the flags given; unset flags add nothing (the daemon's defaults)."""
    check_modes(f)
    sizes = (("Memory", f.memory, "-m, --memory"), ("MemoryReservation", f.memory_reservation,
             "--memory-reservation"), ("KernelMemory", f.kernel_memory, "--kernel-memory"),
             ("ShmSize", f.shm_size, "--shm-size"))
    for key, size, flag in sizes:
        if size is not None:
            hc[key] = size_flag(size, flag)
    if f.memory_swap is not None:
        hc["MemorySwap"] = swap_flag(f.memory_swap)
    if f.memory_swappiness is not None:
        hc["MemorySwappiness"] = swappiness(f.memory_swappiness)
    ints = (("OomScoreAdj", f.oom_score_adj, "--oom-score-adj", 0), ("CpuShares", f.cpu_shares,
            "-c, --cpu-shares", 0), ("CpuPeriod", f.cpu_period, "--cpu-period", 0),
            ("CpuQuota", f.cpu_quota, "--cpu-quota", 0), ("PidsLimit", f.pids_limit, "--pids-limit", 0),
            ("BlkioWeight", f.blkio_weight, "--blkio-weight", 16))
    for key, number, flag, bits in ints:
        if number is not None:
            hc[key] = go_int(number, flag, bits)
    if f.oom_kill_disable:
        hc["OomKillDisable"] = True
    strings = (("CpusetCpus", f.cpuset_cpus), ("CpusetMems", f.cpuset_mems), ("PidMode", f.pid),
               ("IpcMode", f.ipc), ("UTSMode", f.uts), ("CgroupnsMode", f.cgroupns),
               ("CgroupParent", f.cgroup_parent), ("Runtime", f.runtime), ("Isolation", f.isolation),
               ("ContainerIDFile", f.cidfile))
    for key, text in strings:
        if text:
            hc[key] = text
    if f.ulimits:
        hc["Ulimits"] = parse_ulimits(f.ulimits)
    if f.cap_add:
        hc["CapAdd"] = normalize_caps(f.cap_add)
    if f.cap_drop:
        hc["CapDrop"] = normalize_caps(f.cap_drop)
    if f.security_opts:
        hc["SecurityOpt"], unconfined_paths = parse_security_opts(f.security_opts)
        if unconfined_paths:
            hc["MaskedPaths"], hc["ReadonlyPaths"] = [], []
    if f.read_only:
        hc["ReadonlyRootfs"] = True
    if f.group_add:
        hc["GroupAdd"] = list(f.group_add)
    if f.dns:
        hc["Dns"] = parse_dns(f.dns)
    if f.dns_search:
        hc["DnsSearch"] = parse_dns_search(f.dns_search)
    if f.dns_options:
        hc["DnsOptions"] = list(f.dns_options)
    if f.add_hosts:
        hc["ExtraHosts"] = [parse_extra_host(h) for h in f.add_hosts]
    if f.links:
        hc["Links"] = [validate_link(link) for link in f.links]
    for rule in f.device_cgroup_rules:
        if not _DEVICE_CGROUP_RULE.fullmatch(rule):
            raise flag_error("--device-cgroup-rule", rule, f"invalid device cgroup format '{rule}'")
    if f.device_cgroup_rules:
        hc["DeviceCgroupRules"] = list(f.device_cgroup_rules)
    if f.storage_opts:
        hc["StorageOpt"] = parse_storage_opts(f.storage_opts)


def add_to_endpoint(f: RunFlags, network: str, endpoint: dict[str, Any]) -> None:
    """--ip6, --network-alias and (on a user-defined network) --link as endpoint settings."""
    user_defined = user_defined_network(network)
    if f.network_aliases:
        if not user_defined:
            raise OptionError("network-scoped aliases are only supported for user-defined networks")
        endpoint["Aliases"] = list(f.network_aliases)
    if f.links and user_defined:
        endpoint["Links"] = list(f.links)
    if f.ip6:
        endpoint.setdefault("IPAMConfig", {})["IPv6Address"] = f.ip6


def client_warnings(f: RunFlags, daemon_warnings: Sequence[str]) -> list[str]:
    """What the docker CLI adds to the daemon's warnings (and what dockerd on cgroup v2 says
    of a kernel memory limit, which berthd accepts and ignores in the same way)."""
    out = []
    if f.kernel_memory and not any("kernel memory" in w.lower() for w in daemon_warnings):
        out.append("Your kernel does not support kernel memory limit capabilities or the cgroup is not mounted. "
                   "Limitation discarded.")
    for server in f.dns:
        ip = validate_ip(server)
        if ip and (ip.startswith("127.") or ip == "::1"):
            out.append(f"Localhost DNS ({ip}) may fail in containers.")
            break
    return out


_PLATFORM_OS = {"linux", "windows", "darwin", "freebsd", "netbsd", "openbsd", "solaris", "illumos", "aix",
                "android", "ios", "js", "plan9", "dragonfly", "wasip1"}
_PLATFORM_ARCH = {"amd64", "x86_64", "x86-64", "386", "i386", "arm", "armhf", "armel", "arm64", "aarch64",
                  "ppc64le", "ppc64", "s390x", "riscv64", "mips", "mipsle", "mips64", "mips64le", "loong64", "wasm"}


def check_platform(platform: str) -> None:
    """containerd's platforms.Parse, as far as it rejects: `os[/arch[/variant]]`, or a lone
    OS or architecture it knows."""
    parts = platform.lower().split("/")
    if len(parts) > 3:
        raise OptionError(f'error parsing specified platform: "{platform}": cannot parse platform specifier: '
                          "invalid argument")
    if parts[0] not in _PLATFORM_OS and not (len(parts) == 1 and parts[0] in _PLATFORM_ARCH):
        raise OptionError(f'error parsing specified platform: "{platform}": unknown operating system or '
                          "architecture: invalid argument")
