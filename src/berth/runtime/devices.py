"""Device nodes for a container's config: `--device` (a node, or every node under a directory)
with its cgroup rule, `--device-cgroup-rule`, and all of the host's /dev for `--privileged`.
Reads the host's /dev; writes nothing."""

from __future__ import annotations

import os
import posixpath
import stat
from typing import Any

from berth.common.errors import InvalidParameter


def custom_devices(devices: list[dict[str, Any]], cgroup_rules: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """HostConfig.Devices and DeviceCgroupRules as OCI `linux.devices` plus their cgroup rules.
    A directory on the host brings every device node under it, as dockerd."""
    nodes: list[dict[str, Any]] = []
    rules: list[dict[str, Any]] = []
    for d in devices:
        host = str(d.get("PathOnHost") or "")
        dest = str(d.get("PathInContainer") or host)
        perms = str(d.get("CgroupPermissions") or "rwm")
        if not perms or any(ch not in "rwm" for ch in perms):
            raise InvalidParameter(f"invalid device mode: {perms}")
        try:
            found = _device_nodes(host, dest)
        except OSError as e:
            raise InvalidParameter(f'error gathering device information while adding custom device "{host}": '
                                   f"{(e.strerror or str(e)).lower()}") from None
        for node in found:
            nodes.append(node)
            rules.append({"allow": True, "type": node["type"], "major": node["major"], "minor": node["minor"],
                          "access": perms})
    for text in cgroup_rules:
        rules.append(_cgroup_rule(text))
    return nodes, rules


def _device_nodes(host: str, dest: str) -> list[dict[str, Any]]:
    st = os.stat(host)
    if stat.S_ISDIR(st.st_mode):
        out = []
        for node in host_devices(host):
            node["path"] = posixpath.join(dest, os.path.relpath(node["path"], host))
            out.append(node)
        return out
    if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise OSError(0, "not a device node")
    return [{"path": dest, "type": "c" if stat.S_ISCHR(st.st_mode) else "b", "major": os.major(st.st_rdev),
             "minor": os.minor(st.st_rdev), "fileMode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}]


def _cgroup_rule(text: str) -> dict[str, Any]:
    """`--device-cgroup-rule 'c 13:* rwm'`."""
    parts = text.split()
    bad = InvalidParameter(f"invalid device cgroup rule format: '{text}'")
    if len(parts) != 3 or parts[0] not in ("a", "b", "c") or any(ch not in "rwm" for ch in parts[2]):
        raise bad
    major, sep, minor = parts[1].partition(":")
    rule: dict[str, Any] = {"allow": True, "type": parts[0], "access": parts[2]}
    for key, val in (("major", major), ("minor", minor)):
        if val == "*":
            continue
        if not sep or not val.isdigit():
            raise bad
        rule[key] = int(val)
    return rule


def host_devices(root: str = "/dev") -> list[dict[str, Any]]:
    """Every char/block device node under /dev, for --privileged (as runc's HostDevices)."""
    skip_dirs = {"pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"}
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not (dirpath == root and d in skip_dirs)]
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if path == os.path.join(root, "console"):
                continue  # the container gets its own console
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                out.append(
                    {
                        "path": path,
                        "type": "c" if stat.S_ISCHR(st.st_mode) else "b",
                        "major": os.major(st.st_rdev),
                        "minor": os.minor(st.st_rdev),
                        "fileMode": stat.S_IMODE(st.st_mode),
                        "uid": st.st_uid,
                        "gid": st.st_gid,
                    }
                )
    return out

