"""Turn a moby seccomp profile into the OCI `linux.seccomp` object, as dockerd does.

A moby profile is not an OCI filter: rules carry `includes`/`excludes` conditions on
capabilities, architectures and kernel version, and `archMap` lists every architecture. Only the
rules that apply to this machine and to the container's bounding capability set survive.

`seccomp_default.json` is moby's default profile (github.com/moby/profiles/seccomp v0.2.3,
Apache-2.0), copied verbatim.
"""

from __future__ import annotations

import functools
import json
import os
import platform
from pathlib import Path
from typing import Any

from berth.common.errors import InvalidParameter

_DEFAULT_PATH = Path(__file__).with_name("seccomp_default.json")

# platform.machine() -> Go's GOARCH, the vocabulary of `includes.arches` in moby profiles.
_GOARCH = {
    "x86_64": "amd64", "amd64": "amd64", "i386": "386", "i686": "386",
    "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm", "armv6l": "arm",
    "ppc64le": "ppc64le", "ppc64": "ppc64", "s390x": "s390x", "riscv64": "riscv64",
    "loongarch64": "loong64", "mips64": "mips64", "mips": "mips",
}  # fmt: skip

# GOARCH -> the libseccomp architecture that `archMap[].architecture` names.
_NATIVE = {
    "amd64": "SCMP_ARCH_X86_64", "386": "SCMP_ARCH_X86", "arm64": "SCMP_ARCH_AARCH64",
    "arm": "SCMP_ARCH_ARM", "ppc64le": "SCMP_ARCH_PPC64LE", "ppc64": "SCMP_ARCH_PPC64",
    "s390x": "SCMP_ARCH_S390X", "riscv64": "SCMP_ARCH_RISCV64", "loong64": "SCMP_ARCH_LOONGARCH64",
    "mips64": "SCMP_ARCH_MIPS64", "mips64le": "SCMP_ARCH_MIPSEL64", "mips": "SCMP_ARCH_MIPS",
    "mipsle": "SCMP_ARCH_MIPSEL",
}  # fmt: skip

_X32_SYSCALL_BIT, _X32_GETPID = 0x40000000, 39

# Top-level fields that pass through to OCI unchanged when present.
_PASSTHROUGH = ("defaultErrnoRet", "listenerPath", "listenerMetadata", "flags")


def host_arch() -> str:
    """This machine's architecture in Go's naming (`amd64`, `arm64`, ...)."""
    machine = platform.machine()
    return _GOARCH.get(machine, machine)


@functools.cache
def host_has_x32() -> bool:
    """Whether this x86-64 kernel runs x32 syscalls (CONFIG_X86_X32_ABI): x32's getpid answers
    ENOSYS where it does not. False off x86-64."""
    if host_arch() != "amd64":
        return False
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.syscall(_X32_SYSCALL_BIT | _X32_GETPID)) > 0


@functools.cache
def host_kernel() -> tuple[int, int]:
    return parse_kernel(os.uname().release)


def parse_kernel(release: str) -> tuple[int, int]:
    """Turn a release such as `6.1.0-18-amd64` into (6, 1); unparsable parts count as 0."""
    parts = release.split("-", 1)[0].split(".")
    nums = []
    for p in parts[:2]:
        digits = "".join(c for c in p if c.isdigit())  # a "4.8rc1"-style part keeps its number
        nums.append(int(digits) if digits else 0)
    while len(nums) < 2:
        nums.append(0)
    return nums[0], nums[1]


@functools.cache
def _default_json() -> dict[str, Any]:
    # Parsed once per process: decoding the ~20 kB profile is most of what a conversion costs.
    with open(_DEFAULT_PATH, "rb") as f:
        loaded: dict[str, Any] = json.load(f)
    return loaded


def default_profile(caps: set[str] | frozenset[str]) -> dict[str, Any]:
    """moby's default profile, converted for this machine and the bounding capabilities `caps`."""
    converted = convert(_default_json(), caps)
    assert converted is not None  # the default profile always has a defaultAction
    return converted


def convert(
    profile: dict[str, Any],
    caps: set[str] | frozenset[str],
    *,
    arch: str | None = None,
    kernel: tuple[int, int] | None = None,
) -> dict[str, Any] | None:
    """Convert a moby-format profile; None means "no filter", as moby treats an empty profile.

    `caps` is the container's bounding set (`CAP_` names). `arch` (GOARCH) and `kernel`
    default to this machine's; tests pass them to exercise other hosts.
    """
    if not isinstance(profile, dict):
        raise InvalidParameter("seccomp profile must be a JSON object")
    syscalls = profile.get("syscalls") or []
    if not profile.get("defaultAction") and not syscalls:
        return None
    if profile.get("architectures") and profile.get("archMap"):
        raise InvalidParameter(
            "both 'architectures' and 'archMap' are specified in the seccomp profile, "
            "use either 'architectures' or 'archMap'"
        )
    on_host = arch is None
    arch = arch or host_arch()
    kernel = kernel or host_kernel()

    out: dict[str, Any] = {"defaultAction": profile.get("defaultAction", "")}
    arches = list(profile.get("architectures") or [])
    native = _NATIVE.get(arch)
    for entry in profile.get("archMap") or []:
        if entry.get("architecture") == native:
            arches.append(entry["architecture"])
            arches.extend(entry.get("subArchitectures") or [])
    if on_host and "SCMP_ARCH_X32" in arches and not host_has_x32():
        # A kernel without the x32 ABI runs no x32 syscall at all, so its third of the filter
        # would never match, while compiling it is 7 ms of every `runc create`.
        arches.remove("SCMP_ARCH_X32")
    if arches:
        out["architectures"] = arches
    for key in _PASSTHROUGH:
        if profile.get(key):
            out[key] = profile[key]

    rules = []
    for call in syscalls:
        names = _names(call)
        if not _applies(call, caps, arch, kernel):
            continue
        rule: dict[str, Any] = {"names": names, "action": call.get("action", "")}
        if call.get("errnoRet") is not None:
            rule["errnoRet"] = call["errnoRet"]
        if call.get("args"):
            rule["args"] = [dict(a) for a in call["args"]]
        rules.append(rule)
    out["syscalls"] = rules
    return out


def _names(call: dict[str, Any]) -> list[str]:
    names = list(call.get("names") or [])
    if call.get("name"):
        if names:
            raise InvalidParameter("use either 'name' or 'names'")
        names = [call["name"]]
    return names


def _applies(
    call: dict[str, Any], caps: set[str] | frozenset[str], arch: str, kernel: tuple[int, int]
) -> bool:
    """moby's filter: any excluded arch/cap or a new-enough kernel drops the rule; includes need all."""
    exc = call.get("excludes") or {}
    inc = call.get("includes") or {}
    if arch in (exc.get("arches") or []):
        return False
    if any(c in caps for c in exc.get("caps") or []):
        return False
    if exc.get("minKernel") and kernel >= _min_kernel(exc["minKernel"]):
        return False
    if inc.get("arches") and arch not in inc["arches"]:
        return False
    if any(c not in caps for c in inc.get("caps") or []):
        return False
    if inc.get("minKernel") and kernel < _min_kernel(inc["minKernel"]):
        return False
    return True


@functools.lru_cache(maxsize=64)
def _min_kernel(text: str) -> tuple[int, int]:
    try:
        major, minor = text.split(".", 1)
        return int(major), int(minor.split(".")[0])
    except ValueError:
        raise InvalidParameter(f"invalid minKernel {text!r} in seccomp profile: want MAJOR.MINOR") from None
