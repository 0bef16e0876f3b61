"""The resource/security/namespace/DNS flags of `run`/`create`: parsed with docker's rules and
wording, and mapped to the create body fields the docker CLI sends (checked against docker 28's
requests, captured by a fake engine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from berth.cli.runflags import (
    OptionError,
    RunFlags,
    check_platform,
    client_warnings,
    json_compact,
    normalize_caps,
    parse_dns,
    parse_dns_search,
    parse_extra_host,
    parse_security_opts,
    parse_ulimits,
    ram_in_bytes,
    validate_mac,
)
from berth.cli.runopts import RunOptions, create_body


@pytest.mark.parametrize(("text", "size"), [
    ("10", 10), ("10b", 10), ("10B", 10), ("1k", 1024), ("1K", 1024), ("1kb", 1024), ("1KiB", 1024),
    ("64m", 64 << 20), ("1.5g", 3 << 29), ("1 m", 1 << 20), ("1 ", 1), (".5k", 512), ("+5", 5), ("1e3", 1000),
    ("1t", 1 << 40), ("1p", 1 << 50), ("1mib", 1 << 20), ("-0", 0), ("1_000", 1000),
])
def test_sizes_parse_like_rambytes(text: str, size: int) -> None:
    assert ram_in_bytes(text) == size


@pytest.mark.parametrize(("text", "message"), [
    ("1x", "invalid suffix: 'x'"), ("1kbb", "invalid suffix: 'kbb'"), ("1ki", "invalid suffix: 'ki'"),
    ("1bb", "invalid suffix: 'bb'"), ("1e", "invalid suffix: 'e'"), ("-5", "invalid size: '-5'"),
    ("", "invalid size: ''"), ("k", "invalid size: 'k'"), ("inf", "invalid size: 'inf'"),
    (" 1m", 'strconv.ParseFloat: parsing " 1": invalid syntax'),
    ("1.2.3", 'strconv.ParseFloat: parsing "1.2.3": invalid syntax'),
    ("0x10", 'strconv.ParseFloat: parsing "0x10": invalid syntax'),
])
def test_bad_sizes_get_dockers_words(text: str, message: str) -> None:
    with pytest.raises(OptionError) as err:
        ram_in_bytes(text)
    assert str(err.value) == message


def test_size_flags_in_the_body_and_their_errors() -> None:
    hc = _hc(memory="64m", memory_swap="-1", memory_reservation="32m", shm_size="1g", kernel_memory="10m")
    assert hc["Memory"] == 64 << 20 and hc["MemorySwap"] == -1 and hc["MemoryReservation"] == 32 << 20
    assert hc["ShmSize"] == 1 << 30 and hc["KernelMemory"] == 10 << 20
    with pytest.raises(OptionError, match=r'^invalid argument "1x" for "-m, --memory" flag: invalid suffix'):
        _hc(memory="1x")
    with pytest.raises(OptionError, match=r"^invalid argument \"-2\" for \"--memory-swap\" flag: invalid size: '-2'"):
        _hc(memory_swap="-2")


def test_numbers_follow_go_parsing() -> None:
    hc = _hc(cpu_shares="512", cpu_period="100000", cpu_quota="-1", pids_limit="-1", oom_score_adj="+100",
             blkio_weight="300", memory_swappiness="0")
    assert (hc["CpuShares"], hc["CpuPeriod"], hc["CpuQuota"], hc["PidsLimit"]) == (512, 100000, -1, -1)
    assert (hc["OomScoreAdj"], hc["BlkioWeight"], hc["MemorySwappiness"]) == (100, 300, 0)
    for field, value, message in (
        ("cpu_shares", "x", '"-c, --cpu-shares" flag: strconv.ParseInt: parsing "x": invalid syntax'),
        ("pids_limit", "1" * 20, f'"--pids-limit" flag: strconv.ParseInt: parsing "{"1" * 20}": value out of range'),
        ("blkio_weight", "70000", '"--blkio-weight" flag: strconv.ParseUint: parsing "70000": value out of range'),
        ("blkio_weight", "-1", '"--blkio-weight" flag: strconv.ParseUint: parsing "-1": invalid syntax'),
        ("cpu_period", "1.5", '"--cpu-period" flag: strconv.ParseInt: parsing "1.5": invalid syntax'),
    ):
        with pytest.raises(OptionError) as err:
            _hc(**{field: value})
        assert str(err.value) == f'invalid argument "{value}" for {message}'
    with pytest.raises(OptionError, match=r"^invalid value: 101\. Valid memory swappiness range is 0-100$"):
        _hc(memory_swappiness="101")


def test_ulimits_deduplicated_and_sorted() -> None:
    assert parse_ulimits(["nproc=1", "nofile=1024:2048", "core=-1", "nproc=5", "nofile=5:-1"]) == [
        {"Name": "core", "Hard": -1, "Soft": -1},
        {"Name": "nofile", "Hard": -1, "Soft": 5},
        {"Name": "nproc", "Hard": 5, "Soft": 5},
    ]


@pytest.mark.parametrize(("spec", "reason"), [
    ("nofile", "invalid ulimit argument: nofile"),
    ("as=1", "invalid ulimit type: as"),
    ("nofile=a", 'strconv.ParseInt: parsing "a": invalid syntax'),
    ("nofile=1:", 'strconv.ParseInt: parsing "": invalid syntax'),
    ("nofile=2048:1024", "ulimit soft limit must be less than or equal to hard limit: 2048 > 1024"),
    ("nofile=-1:5", "ulimit soft limit must be less than or equal to hard limit: soft: -1 (unlimited), hard: 5"),
    ("nofile=1:2:3", "too many limit value arguments - 1:2:3, can only have up to two, `soft[:hard]`"),
])
def test_bad_ulimits(spec: str, reason: str) -> None:
    with pytest.raises(OptionError) as err:
        parse_ulimits([spec])
    assert str(err.value) == f'invalid argument "{spec}" for "--ulimit" flag: {reason}'


def test_security_opts_inline_a_compacted_seccomp_profile(tmp_path: Path) -> None:
    profile = tmp_path / "p.json"
    profile.write_text('{\n  "defaultAction": "SCMP_ACT_ALLOW",\n  "names": ["a b", "c\\"d"],\n  "x": 1.0\n}\n')
    opts, unconfined = parse_security_opts([f"seccomp={profile}", "no-new-privileges", "seccomp:unconfined",
                                            "label:disable", "seccomp=builtin"])
    assert opts == ['seccomp={"defaultAction":"SCMP_ACT_ALLOW","names":["a b","c\\"d"],"x":1.0}',
                    "no-new-privileges", "seccomp:unconfined", "label:disable", "seccomp=builtin"]
    assert unconfined is False
    assert parse_security_opts(["systempaths=unconfined"]) == ([], True)


def test_bad_security_opts(tmp_path: Path) -> None:
    notjson = tmp_path / "bad.json"
    notjson.write_text("a=1\n")
    for opt, message in (
        ("seccomp", 'Invalid --security-opt: "seccomp"'),
        ("foo", 'Invalid --security-opt: "foo"'),
        ("seccomp=", 'Invalid --security-opt: "seccomp="'),
        (f"seccomp={tmp_path}/none", f"opening seccomp profile ({tmp_path}/none) failed: open {tmp_path}/none: "
                                     "no such file or directory"),
        (f"seccomp={notjson}", f"compacting json for seccomp profile ({notjson}) failed: invalid character 'a' "
                               "looking for beginning of value"),
    ):
        with pytest.raises(OptionError) as err:
            parse_security_opts([opt])
        assert str(err.value) == message


def test_json_compact_keeps_strings_verbatim() -> None:
    assert json_compact('{ "a" : [ 1 , "x  y\\\\" ] }') == '{"a":[1,"x  y\\\\"]}'


def test_caps_normalised_and_sorted() -> None:
    assert normalize_caps(["net_admin", "chown", "AUDIT_WRITE", "CAP_chown", "all"]) == [
        "ALL", "CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_NET_ADMIN"]


def test_add_host_forms() -> None:
    assert parse_extra_host("foo:1.2.3.4") == "foo:1.2.3.4"
    assert parse_extra_host("bar=::1") == "bar:::1"
    assert parse_extra_host("v6=[fd00::2]") == "v6:fd00::2"
    assert parse_extra_host("v6:::1") == "v6:::1"
    assert parse_extra_host("gw:host-gateway") == "gw:host-gateway"
    for spec, reason in (("foo", 'bad format for add-host: "foo"'), (":1.2.3.4", 'bad format for add-host: ":1.2.3.4"'),
                         ("foo:bar", 'invalid IP address in add-host: "bar"'),
                         ("foo:1.2.3.4:5", 'invalid IP address in add-host: "1.2.3.4:5"')):
        with pytest.raises(OptionError) as err:
            parse_extra_host(spec)
        assert str(err.value) == f'invalid argument "{spec}" for "--add-host" flag: {reason}'


def test_dns_flags() -> None:
    assert parse_dns(["1.1.1.1", "0:0::1", " 8.8.8.8"]) == ["1.1.1.1", "::1", "8.8.8.8"]
    assert parse_dns_search(["example.com.", ".", "a-b.c"]) == ["example.com", ".", "a-b.c"]
    with pytest.raises(OptionError, match='for "--dns" flag: IP address is not correctly formatted: foo'):
        parse_dns(["foo"])
    for bad in (".bad", "123", "-a.com"):
        with pytest.raises(OptionError, match=f"{bad} is not a valid domain"):
            parse_dns_search([bad])
    flags = RunFlags(dns=["127.0.0.1"], kernel_memory="1m")
    assert client_warnings(flags, []) == [
        "Your kernel does not support kernel memory limit capabilities or the cgroup is not mounted. "
        "Limitation discarded.", "Localhost DNS (127.0.0.1) may fail in containers."]
    assert client_warnings(RunFlags(dns=["1.1.1.1"]), []) == []


def test_namespaces_and_modes() -> None:
    hc = _hc(pid="host", ipc="shareable", uts="host", cgroupns="private", cgroup_parent="g", runtime="runc",
             isolation="default", read_only=True, oom_kill_disable=True)
    assert (hc["PidMode"], hc["IpcMode"], hc["UTSMode"], hc["CgroupnsMode"]) == ("host", "shareable", "host", "private")
    assert (hc["CgroupParent"], hc["Runtime"], hc["Isolation"]) == ("g", "runc", "default")
    assert hc["ReadonlyRootfs"] is True and hc["OomKillDisable"] is True
    assert _hc(pid="container:abc")["PidMode"] == "container:abc"
    for field, value, message in (("pid", "bogus", "--pid: invalid PID mode"), ("pid", "container:", "--pid: invalid PID mode"),
                                  ("uts", "container:x", "--uts: invalid UTS mode"),
                                  ("cgroupns", "bogus", "--cgroupns: invalid CGROUP mode")):
        with pytest.raises(OptionError, match=f"^{message}$"):
            _hc(**{field: value})


def test_unset_flags_add_nothing() -> None:
    assert create_body(RunOptions(image="busybox"), {})["HostConfig"] == {
        "NetworkMode": "default", "AutoRemove": False, "Privileged": False}


def test_lists_storage_and_device_rules() -> None:
    hc = _hc(group_add=["10", "audio"], storage_opts=["size=1G", "a=", "size=2G"], links=["db:d"],
             device_cgroup_rules=["c 1:3 mr", "a *:* rwm"], dns_options=["ndots:2"], cidfile="/tmp/x",
             security_opts=["systempaths=unconfined"])
    assert hc["GroupAdd"] == ["10", "audio"] and hc["StorageOpt"] == {"size": "2G", "a": ""}
    assert hc["Links"] == ["db:d"] and hc["DeviceCgroupRules"] == ["c 1:3 mr", "a *:* rwm"]
    assert hc["DnsOptions"] == ["ndots:2"] and hc["ContainerIDFile"] == "/tmp/x"
    assert hc["SecurityOpt"] == [] and hc["MaskedPaths"] == [] and hc["ReadonlyPaths"] == []
    with pytest.raises(OptionError, match="^invalid storage option$"):
        _hc(storage_opts=["size"])
    with pytest.raises(OptionError, match="invalid device cgroup format 'x'"):
        _hc(device_cgroup_rules=["x"])
    with pytest.raises(OptionError, match='for "--link" flag: bad format for links: a:b:c'):
        _hc(links=["a:b:c"])


def test_endpoint_flags_on_user_networks_only() -> None:
    body = create_body(RunOptions(image="b", network="mynet", ip="10.1.2.3", flags=RunFlags(
        ip6="fd00::5", network_aliases=["al"], links=["other:o"], domainname="ex.org",
        mac_address="02:42:ac:11:00:99")), {})
    assert body["NetworkingConfig"] == {"EndpointsConfig": {"mynet": {
        "IPAMConfig": {"IPv4Address": "10.1.2.3", "IPv6Address": "fd00::5"}, "Aliases": ["al"], "Links": ["other:o"]}}}
    assert body["HostConfig"]["Links"] == ["other:o"]
    assert body["Domainname"] == "ex.org" and body["MacAddress"] == "02:42:ac:11:00:99"
    legacy = create_body(RunOptions(image="b", flags=RunFlags(links=["db"])), {})
    assert "NetworkingConfig" not in legacy and legacy["HostConfig"]["Links"] == ["db"]
    with pytest.raises(OptionError, match="network-scoped aliases are only supported for user-defined networks"):
        create_body(RunOptions(image="b", network="bridge", flags=RunFlags(network_aliases=["a"])), {})


def test_mac_and_platform_checks() -> None:
    for good in ("02:42:ac:11:00:99", "02-42-AC-11-00-99", "0242.ac11.0099", "00:00:00:00:fe:80:00:00"):
        assert validate_mac(good) == good
    for bad in ("zz", "02:42:ac:11:00", "02:42-ac:11:00:99", "0242.ac11"):
        with pytest.raises(OptionError, match=f"^{bad} is not a valid mac address$"):
            validate_mac(bad)
    for good in ("linux/amd64", "linux/arm64/v8", "arm64", "Linux/AMD64", "linux/whatever"):
        check_platform(good)
    with pytest.raises(OptionError, match='"bogus": unknown operating system or architecture'):
        check_platform("bogus")
    with pytest.raises(OptionError, match="cannot parse platform specifier"):
        check_platform("linux/amd64/v2/x")


def _hc(**flags: object) -> dict[str, object]:
    body = create_body(RunOptions(image="busybox", flags=RunFlags(**flags)), {})  # type: ignore[arg-type]
    return body["HostConfig"]  # type: ignore[no-any-return]
