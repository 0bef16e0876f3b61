"""Converting moby seccomp profiles to OCI, with the conditions dockerd applies."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from berth.common.errors import InvalidParameter
from berth.runtime import seccomp
from berth.runtime.capabilities import DEFAULT_CAPS

DEFAULT = frozenset(DEFAULT_CAPS)
SHARED_PROFILE = Path("/work/shared/specs/seccomp/default.json")


def rules_for(profile: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [r for r in profile["syscalls"] if name in r["names"]]


def allowed(profile: dict[str, Any], name: str) -> bool:
    """True when some rule allows `name` unconditionally (no argument filter)."""
    return any(r["action"] == "SCMP_ACT_ALLOW" and "args" not in r for r in rules_for(profile, name))


def test_default_profile_on_amd64_matches_dockerd_shape() -> None:
    p = seccomp.convert(seccomp._default_json(), DEFAULT, arch="amd64", kernel=(6, 1))
    assert p is not None
    assert p["defaultAction"] == "SCMP_ACT_ERRNO" and p["defaultErrnoRet"] == 1
    assert p["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert allowed(p, "read") and allowed(p, "arch_prctl") and allowed(p, "modify_ldt")
    assert not allowed(p, "arm_fadvise64_64") and not rules_for(p, "s390_runtime_instr")
    # without CAP_SYS_ADMIN: clone only with the namespace-flag mask, clone3 fails with ENOSYS
    assert [r.get("args") for r in rules_for(p, "clone")] == [
        [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}]
    ]
    assert rules_for(p, "clone3") == [{"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
    assert allowed(p, "chroot")  # CAP_SYS_CHROOT is a default capability
    assert not rules_for(p, "reboot") and not rules_for(p, "mount") and not rules_for(p, "bpf")
    assert all("comment" not in r and "includes" not in r and "excludes" not in r for r in p["syscalls"])


def test_x32_kept_only_where_the_kernel_runs_it() -> None:
    if seccomp.host_arch() != "amd64":
        pytest.skip("an x86-64 question")
    on_host = seccomp.default_profile(DEFAULT)
    assert ("SCMP_ARCH_X32" in on_host["architectures"]) == seccomp.host_has_x32()
    assert on_host["architectures"][:2] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]


def test_cap_sys_admin_gates_rules() -> None:
    p = seccomp.convert(seccomp._default_json(), DEFAULT | {"CAP_SYS_ADMIN"}, arch="amd64", kernel=(6, 1))
    assert p is not None
    assert allowed(p, "mount") and allowed(p, "bpf") and allowed(p, "clone") and allowed(p, "clone3")
    # the excludes-CAP_SYS_ADMIN rules are gone
    assert not any(r.get("args") for r in rules_for(p, "clone"))
    assert not any(r["action"] == "SCMP_ACT_ERRNO" for r in rules_for(p, "clone3"))


def test_dropping_a_default_cap_drops_its_rule() -> None:
    p = seccomp.convert(seccomp._default_json(), DEFAULT - {"CAP_SYS_CHROOT"}, arch="amd64", kernel=(6, 1))
    assert p is not None and not rules_for(p, "chroot")


def test_other_architectures() -> None:
    arm = seccomp.convert(seccomp._default_json(), DEFAULT, arch="arm64", kernel=(6, 1))
    assert arm is not None
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert allowed(arm, "arm_fadvise64_64") and not rules_for(arm, "arch_prctl")
    s390 = seccomp.convert(seccomp._default_json(), DEFAULT, arch="s390x", kernel=(6, 1))
    assert s390 is not None
    # excludes.arches drops the amd64 clone rule; the s390 one masks argument 1 instead
    assert [r["args"][0]["index"] for r in rules_for(s390, "clone")] == [1]
    riscv = seccomp.convert(seccomp._default_json(), DEFAULT, arch="riscv64", kernel=(6, 1))
    assert riscv is not None and riscv["architectures"] == ["SCMP_ARCH_RISCV64"]


def test_min_kernel() -> None:
    new = seccomp.convert(seccomp._default_json(), DEFAULT, arch="amd64", kernel=(6, 1))
    old = seccomp.convert(seccomp._default_json(), DEFAULT, arch="amd64", kernel=(4, 4))
    assert new is not None and old is not None
    assert allowed(new, "ptrace") and not rules_for(old, "ptrace")
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["a"], "action": "SCMP_ACT_ERRNO", "excludes": {"minKernel": "5.10"}},
        ],
    }
    assert seccomp.convert(profile, DEFAULT, kernel=(5, 4))["syscalls"]  # type: ignore[index]
    assert not seccomp.convert(profile, DEFAULT, kernel=(5, 10))["syscalls"]  # type: ignore[index]


def test_user_profile_forms() -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            {"name": "chmod", "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {
                "names": ["kill"],
                "action": "SCMP_ACT_ERRNO",
                "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}],
            },
        ],
    }
    assert seccomp.convert(profile, DEFAULT) == {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {
                "names": ["kill"],
                "action": "SCMP_ACT_ERRNO",
                "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}],
            },
        ],
    }
    assert seccomp.convert({}, DEFAULT) is None  # moby: an empty profile means no filter


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        (
            {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["x"], "archMap": [{"architecture": "x"}]},
            "both 'architectures' and 'archMap'",
        ),
        (
            {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"name": "a", "names": ["b"], "action": "x"}]},
            "use either 'name' or 'names'",
        ),
        (
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["a"], "action": "x", "includes": {"minKernel": "five"}}],
            },
            "invalid minKernel",
        ),
    ],
)
def test_invalid_profiles(profile: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidParameter, match=message):
        seccomp.convert(profile, DEFAULT)


def test_parse_kernel() -> None:
    assert seccomp.parse_kernel("6.1.0-18-amd64") == (6, 1)
    assert seccomp.parse_kernel("5.15.90.1-microsoft-standard-WSL2") == (5, 15)
    assert seccomp.parse_kernel("6") == (6, 0)


def test_bundled_profile_is_the_shared_copy() -> None:
    if not SHARED_PROFILE.exists():
        pytest.skip("no shared specs on this machine")
    assert json.loads(SHARED_PROFILE.read_text()) == seccomp._default_json()


def test_default_profile_is_cheap_and_unshared() -> None:
    seccomp.default_profile(DEFAULT)  # warm the cache
    start = time.perf_counter()
    for _ in range(100):
        p = seccomp.default_profile(DEFAULT)
    assert (time.perf_counter() - start) / 100 < 0.002  # ~30 µs here; the file is parsed once
    p["syscalls"][0]["names"].clear()
    assert seccomp.default_profile(DEFAULT)["syscalls"][0]["names"]
