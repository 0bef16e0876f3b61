"""Linux capabilities as dockerd grants them: its default set, every capability by number,
`--cap-add/--cap-drop/--privileged` resolved against what this host can grant."""

from __future__ import annotations

import functools

from berth.common.errors import InvalidParameter

# docker's default set, in docker's order (it shows in `config.json` and `docker inspect`).
DEFAULT_CAPS = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)  # fmt: skip
# Every capability by number (index = bit), the order "ALL" and --privileged list them in.
ALL_CAPS = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
    "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)  # fmt: skip


def capabilities(add: list[str], drop: list[str], privileged: bool, host_caps: frozenset[str]) -> list[str]:
    """docker's TweakCapabilities, limited to what this host can grant.

    "ALL" and --privileged mean every capability the host has (a kernel cap berth lacks, such as
    CAP_SYS_RESOURCE here, would make runc fail); an explicitly added missing one is an error.
    """
    everything = [c for c in ALL_CAPS if c in host_caps]
    if privileged:
        return everything
    adds, drops = _normalize_caps(add), _normalize_caps(drop)
    for c in adds:
        if c != "ALL" and c not in host_caps:
            raise InvalidParameter(f"capability {c} is not available to berth on this host")
    if "ALL" in adds:
        return [c for c in everything if c not in drops]
    if "ALL" in drops:
        base: list[str] = []
    else:
        base = [c for c in DEFAULT_CAPS if c not in drops and c in host_caps]
    return base + [c for c in dict.fromkeys(adds) if c not in base]


def _normalize_caps(names: list[str]) -> list[str]:
    out = []
    for raw in names:
        c = raw.strip().upper()
        if c != "ALL" and not c.startswith("CAP_"):
            c = "CAP_" + c
        if c != "ALL" and c not in ALL_CAPS:
            raise InvalidParameter(f'unknown capability: "{c}"')
        out.append(c)
    return out


@functools.cache
def host_capabilities() -> frozenset[str]:
    """The capability bounding set of this process: what any container of ours can get."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapBnd:"):
                mask = int(line.split()[1], 16)
                return frozenset(c for bit, c in enumerate(ALL_CAPS) if mask >> bit & 1)
    return frozenset(ALL_CAPS)
