"""userns-remap's pure parts: subordinate ranges, the ID map, the spec changes, custom devices."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from berth.common.errors import InvalidParameter
from berth.runtime import capabilities, devices, spec
from berth.runtime.userns import IdRange, next_range_start, parse_remap_value, parse_subordinate, stacked

SUBUID = """\
alice:100000:65536
dockremap:165536:65536
# a comment
dockremap:300000:1000
999:400000:10
broken:line
"""


def test_ranges_are_stacked_from_zero_in_file_order() -> None:
    ranges = parse_subordinate(SUBUID, ("dockremap", "999"))
    assert ranges == [(165536, 65536), (300000, 1000), (400000, 10)]
    assert stacked(ranges) == (IdRange(0, 165536, 65536), IdRange(65536, 300000, 1000), IdRange(66536, 400000, 10))


def test_a_new_range_goes_past_those_it_would_overlap() -> None:
    assert next_range_start("") == 100000
    assert next_range_start("a:100000:65536\nb:165536:65536\n") == 231072
    assert next_range_start("a:500000:10\n") == 100000


def test_remap_values() -> None:
    assert parse_remap_value("default") == ("default", "")
    assert parse_remap_value("bob:staff") == ("bob", "staff")
    with pytest.raises(ValueError):
        parse_remap_value(":staff")


def _bridge_spec(**kw: Any) -> dict[str, Any]:
    o = spec.SpecOptions(container_id="c" * 64, rootfs="/r", args=["sh"], network_mode="/run/netns/x",
                         host_caps=frozenset(capabilities.ALL_CAPS), **kw)
    return spec.build_spec(o)


MAPS = ([{"containerID": 0, "hostID": 100000, "size": 65536}],
        [{"containerID": 0, "hostID": 100000, "size": 65536}])


def test_user_namespace_with_a_netns_of_its_own() -> None:
    s = _bridge_spec()
    spec.apply_user_namespace(s, *MAPS, own_netns=True)
    ns = {n["type"]: n for n in s["linux"]["namespaces"]}
    assert ns["user"] == {"type": "user"} and ns["network"] == {"type": "network"}
    assert s["linux"]["uidMappings"] == MAPS[0] and s["linux"]["gidMappings"] == MAPS[1]
    cgroup = next(m for m in s["mounts"] if m["type"] == "cgroup")
    assert "ro" not in cgroup["options"]
    # the kernel takes only mapped groups when the container's root writes the range
    assert s["linux"]["sysctl"]["net.ipv4.ping_group_range"] == "0 65535"


def test_joining_another_containers_netns_joins_its_user_namespace() -> None:
    s = _bridge_spec()
    for n in s["linux"]["namespaces"]:
        if n["type"] == "network":
            n["path"] = "/proc/42/ns/net"
    before = copy.deepcopy(s["linux"]["namespaces"])
    spec.apply_user_namespace(s, *MAPS)
    assert s["linux"]["namespaces"] == before + [{"type": "user", "path": "/proc/42/ns/user"}]


def test_custom_devices_and_cgroup_rules() -> None:
    nodes, rules = devices.custom_devices(
        [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/xnull", "CgroupPermissions": "rw"}], ["c 13:* rwm"])
    assert [(n["path"], n["type"], n["major"], n["minor"]) for n in nodes] == [("/dev/xnull", "c", 1, 3)]
    assert rules == [{"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"},
                     {"allow": True, "type": "c", "major": 13, "access": "rwm"}]
    with pytest.raises(InvalidParameter, match='adding custom device "/dev/nosuch": no such file'):
        devices.custom_devices([{"PathOnHost": "/dev/nosuch"}], [])
    with pytest.raises(InvalidParameter, match="invalid device cgroup rule format"):
        devices.custom_devices([], ["c 13 rwm"])
    s = _bridge_spec(devices=nodes, device_cgroup_rules=rules, init=True, init_path="/usr/bin/tini-static")
    assert s["linux"]["devices"] == nodes and s["linux"]["resources"]["devices"][-2:] == rules
    assert s["process"]["args"][:2] == ["/sbin/docker-init", "--"]


def test_a_device_put_elsewhere_is_bound_from_its_host_path() -> None:
    nodes, rules = devices.custom_devices([{"PathOnHost": "/dev/null", "PathInContainer": "/dev/xnull"},
                                           {"PathOnHost": "/dev/zero"}], [])
    s = _bridge_spec(devices=nodes, device_cgroup_rules=rules)
    spec.apply_user_namespace(s, *MAPS, device_sources={"/dev/xnull": "/dev/null", "/dev/zero": "/dev/zero"})
    assert [d["path"] for d in s["linux"]["devices"]] == ["/dev/zero"]
    assert s["mounts"][-1] == {"destination": "/dev/xnull", "type": "bind", "source": "/dev/null",
                               "options": ["bind", "nosuid", "noexec"]}
    assert s["linux"]["resources"]["devices"][-2:] == rules  # the cgroup still allows both
