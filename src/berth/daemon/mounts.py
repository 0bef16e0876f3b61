"""A container's mount points: parsed at create from Binds, Mounts, VolumesFrom and the
image's and request's Volumes; turned into OCI mounts at each start; released at exit.

A mount point is kept in the container record as a dict with docker's MountPoint fields
(`Type`, `Name`, `Source`, `Destination`, `Driver`, `Mode`, `RW`, `Propagation`) plus what
berth needs at start (`CopyData`, `Anonymous`, `Options`, `Subpath`, `NonRecursive`). Precedence
is moby's: VolumesFrom, then Binds, then Mounts (a later one replaces an earlier one at the same
destination), then an anonymous volume for each remaining `Config.Volumes` path.
"""

from __future__ import annotations

import os
import posixpath
import subprocess
from collections.abc import Callable, Iterable
from typing import Any

from berth.common.errors import Conflict, InvalidParameter, NotFound
from berth.common.ids import new_id
from berth.runtime import mount as runtime_mount
from berth.volumes.driver import ANONYMOUS_LABEL, VolumeDriver

from .model import Container

_PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
_API_KEYS = ("Type", "Name", "Source", "Destination", "Driver", "Mode", "RW", "Propagation")
# OCI tmpfs defaults, as dockerd: a later user word of the same pair wins.
_TMPFS_DEFAULTS = ("noexec", "nosuid", "nodev")
_OPPOSITES = {"exec": "noexec", "suid": "nosuid", "dev": "nodev", "rw": "ro", "atime": "noatime",
              "diratime": "nodiratime", "strictatime": "nostrictatime"}


class RuntimeMounter:
    """The local driver's Mounter, backed by the runtime's mount(2) wrapper."""

    def mount(self, source: str, target: str, fstype: str, options: list[str], flags: int = 0) -> None:
        runtime_mount.mount(source, target, fstype, options, flags)

    def unmount(self, target: str) -> None:
        runtime_mount.unmount(target)

    def is_mounted(self, target: str) -> bool:
        return runtime_mount.is_mounted(target)


def api_view(mp: dict[str, Any]) -> dict[str, Any]:
    """A mount point as inspect's and ps's `Mounts` show it."""
    out = {k: mp.get(k, "") for k in _API_KEYS}
    if mp["Type"] != "volume":
        out.pop("Name")
        out.pop("Driver")
    return out


def _mount_point(typ: str, dest: str, *, source: str = "", name: str = "", rw: bool = True, mode: str = "",
                 propagation: str = "", copy_data: bool = False, anonymous: bool = False,
                 options: str = "", subpath: str = "", non_recursive: bool = False) -> dict[str, Any]:
    return {"Type": typ, "Name": name, "Source": source, "Destination": dest,
            "Driver": "local" if typ == "volume" else "", "Mode": mode, "RW": rw, "Propagation": propagation,
            "CopyData": copy_data, "Anonymous": anonymous, "Options": options, "Subpath": subpath,
            "NonRecursive": non_recursive}


def _clean_dest(dest: Any, spec: str) -> str:
    if not isinstance(dest, str) or not dest:
        raise InvalidParameter(f"invalid volume specification: '{spec}': field Target must not be empty")
    if not dest.startswith("/"):
        raise InvalidParameter(f"invalid volume specification: '{spec}': invalid mount config for type "
                               f'"volume": invalid mount path: \'{dest}\' mount path must be absolute')
    dest = posixpath.normpath(dest)
    if dest == "/":
        raise InvalidParameter(f"invalid volume specification: '{spec}': invalid mount config: "
                               "destination can't be '/'")
    return dest


class MountManager:
    """Owns the mount points of containers; `users` tells who holds a volume."""

    def __init__(self, driver: VolumeDriver, containers: Callable[[], Iterable[Container]],
                 lookup: Callable[[str], Container]) -> None:
        self.driver = driver
        self._containers = containers
        self._lookup = lookup

    # --- create ----------------------------------------------------------------------------
    def plan(self, cid: str, config: dict[str, Any], hc: dict[str, Any]) -> list[dict[str, Any]]:
        """Parse and validate every mount source of a create request; creates the named and
        anonymous volumes it needs (docker does this at create, not at start)."""
        points: dict[str, dict[str, Any]] = {}
        for item in hc.get("VolumesFrom") or []:
            for mp in self._volumes_from(item):
                points[mp["Destination"]] = mp
        seen: set[str] = set()
        for spec in hc.get("Binds") or []:
            mp = self._bind(spec)
            if mp["Destination"] in seen:
                raise InvalidParameter(f"Duplicate mount point: {mp['Destination']}")
            seen.add(mp["Destination"])
            points[mp["Destination"]] = mp
        for m in hc.get("Mounts") or []:
            mp = self._mount(m)
            if mp["Destination"] in seen:
                raise InvalidParameter(f"Duplicate mount point: {mp['Destination']}")
            seen.add(mp["Destination"])
            points[mp["Destination"]] = mp
        for path in (hc.get("Tmpfs") or {}):
            dest = _clean_dest(path, path)
            if dest in seen:
                raise InvalidParameter(f"Duplicate mount point: {dest}")
        for path in sorted(config.get("Volumes") or {}):
            dest = _clean_dest(path, path)
            if dest in points or dest in (hc.get("Tmpfs") or {}):
                continue
            points[dest] = _mount_point("volume", dest, anonymous=True, copy_data=True)
        out = list(points.values())
        self._create_volumes(out)
        return out

    def _volumes_from(self, item: Any) -> list[dict[str, Any]]:
        if not isinstance(item, str) or not item:
            raise InvalidParameter(f"invalid VolumesFrom entry: {item!r}")
        ref, _, mode = item.partition(":")
        if mode not in ("", "ro", "rw"):
            raise InvalidParameter(f"invalid mode for volumes-from: {mode}")
        try:
            src = self._lookup(ref)
        except NotFound:
            raise NotFound(f"No such container: {ref}") from None
        out = []
        for mp in src.mounts:
            cp = dict(mp, CopyData=False)
            if mode:
                cp["RW"] = mp["RW"] and mode == "rw"
            out.append(cp)
        return out

    def _bind(self, spec: Any) -> dict[str, Any]:
        """`-v` syntax: `[SRC:]DST[:MODE]`, SRC a host path (bind) or a volume name."""
        if not isinstance(spec, str) or not spec:
            raise InvalidParameter(f"invalid volume specification: '{spec}'")
        parts = spec.split(":")
        if len(parts) == 1:
            src, dest, mode = "", parts[0], ""
        elif len(parts) == 2:
            if parts[1] and not parts[1].startswith("/") and parts[0].startswith("/"):
                src, dest, mode = "", parts[0], parts[1]  # DST:MODE
            else:
                src, dest, mode = parts[0], parts[1], ""
        elif len(parts) == 3:
            src, dest, mode = parts
        else:
            raise InvalidParameter(f"invalid volume specification: '{spec}'")
        dest = _clean_dest(dest, spec)
        rw, propagation, nocopy = True, "", False
        for word in filter(None, mode.split(",")):
            if word in ("ro", "rw"):
                rw = word == "rw"
            elif word in ("z", "Z"):
                pass  # SELinux relabelling: no SELinux on the hosts berth supports
            elif word in _PROPAGATIONS:
                propagation = word
            elif word == "nocopy":
                nocopy = True
            else:
                raise InvalidParameter(f"invalid mode: {mode}")
        if src.startswith("/"):
            if nocopy:
                raise InvalidParameter(f"invalid mode: {mode}")
            src = posixpath.normpath(src)
            if not os.path.exists(src):
                os.makedirs(src, 0o755, exist_ok=True)  # -v creates a missing host directory
            return _mount_point("bind", dest, source=src, rw=rw, mode=mode, propagation=propagation or "rprivate")
        if propagation:
            raise InvalidParameter(f"invalid mode: {mode}")
        if src:
            from berth.volumes.local import check_name

            check_name(src)
        return _mount_point("volume", dest, name=src, rw=rw, mode=mode or ("z" if src else ""),
                            copy_data=not nocopy, anonymous=not src)

    def _mount(self, m: Any) -> dict[str, Any]:
        """One HostConfig.Mounts entry (`--mount`)."""
        if not isinstance(m, dict):
            raise InvalidParameter("HostConfig.Mounts entries must be objects")
        typ = m.get("Type") or ""
        source = m.get("Source") or ""
        target = m.get("Target") or ""
        bad = f'invalid mount config for type "{typ}": '
        if not target:
            raise InvalidParameter(bad + "field Target must not be empty")
        dest = _clean_dest(target, target)
        rw = not m.get("ReadOnly")
        if typ == "bind":
            opts = m.get("BindOptions") or {}
            if not source:
                raise InvalidParameter(bad + "field Source must not be empty")
            if not source.startswith("/"):
                raise InvalidParameter(bad + f"invalid mount path: '{source}' mount path must be absolute")
            if m.get("VolumeOptions") or m.get("TmpfsOptions"):
                raise InvalidParameter(bad + "field VolumeOptions must not be specified")
            if not os.path.exists(source):
                if not opts.get("CreateMountpoint"):
                    raise InvalidParameter(bad + f"bind source path does not exist: {source}")
                os.makedirs(source, 0o755, exist_ok=True)
            propagation = opts.get("Propagation") or "rprivate"
            if propagation not in _PROPAGATIONS:
                raise InvalidParameter(bad + f"invalid propagation mode: {propagation}")
            return _mount_point("bind", dest, source=posixpath.normpath(source), rw=rw, propagation=propagation,
                                non_recursive=bool(opts.get("NonRecursive")))
        if typ == "volume":
            opts = m.get("VolumeOptions") or {}
            if m.get("BindOptions") or m.get("TmpfsOptions"):
                raise InvalidParameter(bad + "field BindOptions must not be specified")
            if source:
                from berth.volumes.local import check_name

                check_name(source)
            driver_cfg = opts.get("DriverConfig") or {}
            if (driver_cfg.get("Name") or "local") != "local":
                name = driver_cfg["Name"]
                raise NotFound(f'error looking up volume plugin {name}: plugin "{name}" not found')
            subpath = opts.get("Subpath") or ""
            if subpath and (subpath.startswith("/") or ".." in subpath.split("/")):
                raise InvalidParameter(bad + "subpath must be a relative path within the volume")
            mp = _mount_point("volume", dest, name=source, rw=rw, copy_data=not opts.get("NoCopy"),
                              anonymous=not source, subpath=subpath)
            mp["_labels"] = dict(opts.get("Labels") or {})
            mp["_driver_opts"] = dict(driver_cfg.get("Options") or {})
            return mp
        if typ == "tmpfs":
            if source:
                raise InvalidParameter(bad + "field Source must not be specified")
            if m.get("BindOptions") or m.get("VolumeOptions"):
                raise InvalidParameter(bad + "field BindOptions must not be specified")
            opts = m.get("TmpfsOptions") or {}
            words = []
            if opts.get("SizeBytes"):
                words.append(f"size={int(opts['SizeBytes'])}")
            if opts.get("Mode"):
                words.append(f"mode={int(opts['Mode']):o}")
            return _mount_point("tmpfs", dest, rw=rw, options=",".join(words))
        if typ == "npipe":
            raise InvalidParameter(bad + "npipe mounts are only supported on Windows")
        raise InvalidParameter(f'invalid mount config: mount type unknown: "{typ}"')

    def _create_volumes(self, points: list[dict[str, Any]]) -> None:
        made: list[str] = []
        try:
            for mp in points:
                if mp["Type"] != "volume":
                    continue
                labels = mp.pop("_labels", {})
                opts = mp.pop("_driver_opts", {})
                if not mp["Name"]:
                    mp["Name"] = new_id()
                    labels = {**labels, ANONYMOUS_LABEL: ""}
                    vol = self.driver.create(mp["Name"], opts, labels)
                    made.append(vol.name)
                else:
                    try:
                        vol = self.driver.get(mp["Name"])
                    except NotFound:
                        vol = self.driver.create(mp["Name"], opts, labels)
                        made.append(vol.name)
                mp["Source"] = vol.mountpoint
                mp["Driver"] = vol.driver
        except BaseException:
            for name in made:
                self.driver.remove(name)
            raise

    # --- start / exit ----------------------------------------------------------------------
    def oci_mounts(self, c: Container, rootfs: str) -> list[dict[str, Any]]:
        """Mount the container's volumes, fill new ones from the image, and return the OCI
        mounts (binds, volumes, tmpfs) for its config.json."""
        out: list[dict[str, Any]] = []
        try:
            for mp in c.mounts:
                out.append(self._oci_mount(c, mp, rootfs))
        except BaseException:
            self.release(c)
            raise
        for path, data in (c.host_config.get("Tmpfs") or {}).items():
            out.append({"destination": posixpath.normpath(path), "type": "tmpfs", "source": "tmpfs",
                        "options": _tmpfs_options(str(data or ""), True)})
        return out

    def _oci_mount(self, c: Container, mp: dict[str, Any], rootfs: str) -> dict[str, Any]:
        dest = mp["Destination"]
        if mp["Type"] == "tmpfs":
            return {"destination": dest, "type": "tmpfs", "source": "tmpfs",
                    "options": _tmpfs_options(mp.get("Options") or "", mp["RW"])}
        if mp["Type"] == "volume":
            source = self.driver.mount(mp["Name"], c.id)
            if mp.get("CopyData"):
                _copy_image_content(rootfs, dest, source)
            if mp.get("Subpath"):
                source = os.path.join(source, mp["Subpath"])
                if not os.path.exists(source):
                    raise InvalidParameter(f"cannot access path {source}: no such file or directory")
        else:
            source = mp["Source"]
            if not os.path.exists(source):
                raise InvalidParameter(f'invalid mount config for type "bind": bind source path does not '
                                       f"exist: {source}")
        opts = ["bind" if mp.get("NonRecursive") else "rbind", mp.get("Propagation") or "rprivate"]
        if not mp["RW"]:
            opts.append("ro")
        return {"destination": dest, "type": "bind", "source": source, "options": opts}

    def release(self, c: Container) -> None:
        for mp in c.mounts:
            if mp["Type"] == "volume" and mp["Name"]:
                try:
                    self.driver.unmount(mp["Name"], c.id)
                except OSError:
                    pass

    def reacquire(self, c: Container) -> None:
        """After a berthd restart: count a running container's volume mounts again."""
        for mp in c.mounts:
            if mp["Type"] == "volume" and mp["Name"]:
                try:
                    self.driver.mount(mp["Name"], c.id)
                except (NotFound, OSError):
                    pass

    # --- removal ---------------------------------------------------------------------------
    def users(self, name: str) -> list[str]:
        return [c.id for c in self._containers()
                if any(mp["Type"] == "volume" and mp["Name"] == name for mp in c.mounts)]

    def check_unused(self, name: str) -> None:
        users = self.users(name)
        if users:
            raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")

    def remove_anonymous(self, c: Container) -> None:
        """`rm -v`: the container's anonymous volumes that no other container uses."""
        for mp in c.mounts:
            if mp["Type"] != "volume" or not mp.get("Anonymous") or not mp["Name"]:
                continue
            if any(u != c.id for u in self.users(mp["Name"])):
                continue
            try:
                self.driver.unmount(mp["Name"], c.id)
                self.driver.remove(mp["Name"])
            except NotFound:
                pass


def _tmpfs_options(data: str, rw: bool) -> list[str]:
    words = [*_TMPFS_DEFAULTS, "rprivate"]
    if not rw:
        words.append("ro")
    for w in filter(None, (x.strip() for x in data.split(","))):
        key = w.split("=", 1)[0]
        opposite = _OPPOSITES.get(key) or next((k for k, v in _OPPOSITES.items() if v == key), None)
        words = [x for x in words if x.split("=", 1)[0] not in (key, opposite)]
        words.append(w)
    return words


def resolve_in(root: str, path: str) -> str:
    """`path` inside `root` with symlinks followed as if `root` were `/` (never escaping it)."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    hops = 0
    while parts:
        comp = parts.pop(0)
        if comp == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, comp)
        if os.path.islink(candidate):
            hops += 1
            if hops > 40:
                raise InvalidParameter(f"too many levels of symbolic links in {path}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(comp)
    return os.path.join(root, *resolved)


def _copy_image_content(rootfs: str, dest: str, volume_dir: str) -> None:
    """docker's copy-up: an empty volume takes the files (and the directory's owner and mode)
    the image has at the mount path."""
    src = resolve_in(rootfs, dest)
    if not os.path.isdir(src) or os.listdir(volume_dir):
        return
    if os.listdir(src):
        res = subprocess.run(["cp", "-a", "--", src + "/.", volume_dir + "/"], capture_output=True, text=True,
                             check=False)
        if res.returncode != 0:
            raise InvalidParameter(f"copying the image's {dest} into its volume failed: {res.stderr.strip()}")
    st = os.stat(src)
    os.chown(volume_dir, st.st_uid, st.st_gid)
    os.chmod(volume_dir, st.st_mode & 0o7777)
