"""The daemon's side of `--userns-remap`: which containers it applies to, what dockerd refuses
with it, and the host-side work a remapped start needs (idmapped root, the working directory, a
network namespace the container's user namespace owns, the /etc files' owner)."""

from __future__ import annotations

import os
from typing import Any

from berth.common.errors import InvalidParameter
from berth.runtime import mount as mounts
from berth.runtime import spec as spec_mod
from berth.runtime import users
from berth.runtime.userns import UserNamespace
from berth.snapshots.overlay import Mount

from .mounts import resolve_in

_MS_BIND = 4096


def check_host_config(hc: dict[str, Any], remapping: bool) -> None:
    """dockerd's create-time checks of UsernsMode and what conflicts with a remapped root."""
    mode = hc.get("UsernsMode") or ""
    if not remapping:
        return  # dockerd 20.10 lets any value through then (the CLI checks its own)
    if mode not in ("", "host"):
        raise InvalidParameter(f"invalid USERNS mode: {mode}")
    if mode == "host":
        return
    if hc.get("Privileged"):
        raise InvalidParameter("privileged mode is incompatible with user namespaces.  You must run the "
                               "container in the host namespace when running privileged mode")
    if hc.get("NetworkMode") == "host":
        raise InvalidParameter("cannot share the host's network namespace when user namespaces are enabled")
    if hc.get("PidMode") == "host":
        raise InvalidParameter("cannot share the host PID namespace when user namespaces are enabled")


class Remap:
    """Daemon-wide remapping: one user namespace (its map) for every container not opted out."""

    def __init__(self, ns: UserNamespace) -> None:
        self.ns = ns
        self.idmap = ns.idmap

    def applies(self, hc: dict[str, Any]) -> bool:
        return (hc.get("UsernsMode") or "") != "host"

    def mount_rootfs(self, m: Mount, rootfs: str) -> None:
        if m.type != "overlay":
            raise InvalidParameter(f"userns-remap needs overlay layers, not {m.type}")
        self.ns.mount_overlay(m.options, rootfs)

    def prepare_rootfs(self, rootfs: str, cwd: str, user: str) -> None:
        """Create a missing working directory as the remapped root would (a write by the host's
        root through the idmapped layer is refused: uid 0 has no ID inside), owned by the user."""
        if not cwd.startswith("/") or cwd == "/":
            return
        target = resolve_in(rootfs, cwd)
        if os.path.lexists(target):
            return
        uid, gid, _ = users.resolve_user(rootfs, user)

        def make() -> None:
            os.makedirs(target, exist_ok=True)
            os.chown(target, *self.idmap.to_host(uid, gid))

        self.ns.as_root(make)

    def finish_spec(self, spec: dict[str, Any], cdir: str, netns_path: str | None,
                    devices: list[dict[str, Any]] | None = None) -> bool:
        """Put the config in the user namespace; give the container's /etc files to its root, as
        dockerd does. True when the runtime is to make the network namespace, which `adopt_netns`
        then puts in the place of the daemon's (at `netns_path`) before it is wired: a namespace
        the container's own user namespace owns."""
        own_netns = bool(netns_path) and not str(netns_path).startswith("/proc/")
        uid_maps, gid_maps = self.idmap.oci()
        sources = {str(d.get("PathInContainer") or d.get("PathOnHost")): str(d.get("PathOnHost"))
                   for d in devices or [] if d.get("PathOnHost")}
        spec_mod.apply_user_namespace(spec, uid_maps, gid_maps, own_netns=own_netns, device_sources=sources)
        for name in ("hostname", "hosts", "resolv.conf"):
            path = os.path.join(cdir, name)
            if os.path.exists(path):
                os.chown(path, self.idmap.root_uid, self.idmap.root_gid)
        return own_netns

    @staticmethod
    def adopt_netns(pid: int, netns_path: str) -> None:
        """Hold the created container's network namespace at the daemon's path for it."""
        mounts.unmount(netns_path)
        mounts.mount(f"/proc/{pid}/ns/net", netns_path, "", [], _MS_BIND)
