"""docker's `local` volume driver: `<root>/<name>/_data`, records in SQLite.

A volume without options is a plain directory. With docker's driver options (`type`, `device`,
`o`) the directory is a mount point: `type=tmpfs o=size=64m`, `type=none o=bind device=/srv/x`,
`type=ext4 device=/dev/sdb1`... The filesystem is mounted at the first `mount` reference and
unmounted after the last, as moby's local driver does. The mounting itself is done by the
injected `Mounter` (the runtime's); this package never calls mount(2) on its own.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from typing import Protocol

from berth.common.db import Database
from berth.common.errors import Conflict, InvalidParameter, NotFound, SystemError_

from .driver import Volume

SCHEMA = """
CREATE TABLE IF NOT EXISTS volumes (
    name TEXT PRIMARY KEY,
    record TEXT NOT NULL
);
"""

_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_VALID_OPTS = ("type", "device", "o", "size")
_MANDATORY_NONEMPTY = ("type", "device")

# mount(8) words that are flags, not filesystem data (sys/mount.h).
_MS = {
    "ro": 1, "nosuid": 2, "nodev": 4, "noexec": 8, "sync": 16, "remount": 32, "mand": 64,
    "dirsync": 128, "noatime": 1024, "nodiratime": 2048, "bind": 4096, "rbind": 4096 | 16384,
    "unbindable": 1 << 17, "runbindable": (1 << 17) | 16384, "private": 1 << 18,
    "rprivate": (1 << 18) | 16384, "slave": 1 << 19, "rslave": (1 << 19) | 16384, "shared": 1 << 20,
    "rshared": (1 << 20) | 16384, "relatime": 1 << 21, "strictatime": 1 << 24,
}  # fmt: skip
_CLEAR = ("rw", "suid", "dev", "exec", "async", "atime", "diratime", "defaults")


class Mounter(Protocol):
    def mount(self, source: str, target: str, fstype: str, options: list[str], flags: int = 0) -> None: ...
    def unmount(self, target: str) -> None: ...
    def is_mounted(self, target: str) -> bool: ...


def check_name(name: str) -> None:
    if len(name) < 2:
        raise InvalidParameter(f'volume name is too short, names should be at least two alphanumeric '
                               f'characters: "{name}"')
    if not _NAME_RE.match(name):
        raise InvalidParameter(f'"{name}" includes invalid characters for a local volume name, only '
                               '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
                               "directory, use absolute path")


def check_options(options: dict[str, str]) -> None:
    for key, val in options.items():
        if key not in _VALID_OPTS:
            raise InvalidParameter(f'invalid option key: "{key}"')
        if key in _MANDATORY_NONEMPTY and not val:
            raise InvalidParameter(f'mandatory option "{key}" is empty')
    if "size" in options:
        raise InvalidParameter("quota size requested but no quota support")
    if options and "type" not in options and "device" not in options:
        raise InvalidParameter('missing required option: "type"')


def mount_args(options: dict[str, str]) -> tuple[str, str, int, list[str]]:
    """(source, fstype, flags, data) for a volume's options, as `mount -t TYPE -o O DEVICE`."""
    fstype = options.get("type", "")
    flags, data = 0, []
    for word in filter(None, options.get("o", "").split(",")):
        if word in _MS:
            flags |= _MS[word]
        elif word not in _CLEAR:
            data.append(word)
    if flags & _MS["bind"] and fstype in ("", "none"):
        fstype = "none"
    source = options.get("device") or fstype or "none"
    return source, fstype, flags, data


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class LocalDriver:
    """The `local` VolumeDriver. Records live in the `volumes` table; data under `root`."""

    name = "local"

    def __init__(self, root: str, db: Database, mounter: Mounter, owner: tuple[int, int] | None = None) -> None:
        self.root = root
        self.db = db
        self.mounter = mounter
        self.owner = owner  # (uid, gid) of a new volume's data: the remapped root under userns-remap
        self._refs: dict[str, set[str]] = {}
        os.makedirs(root, mode=0o701, exist_ok=True)
        db.ensure_schema(SCHEMA)

    def _data(self, name: str) -> str:
        return os.path.join(self.root, name, "_data")

    def _load(self, name: str) -> Volume | None:
        rows = self.db.query("SELECT record FROM volumes WHERE name=?", (name,))
        if not rows:
            return None
        return Volume(**json.loads(rows[0]["record"]))

    def create(self, name: str, options: dict[str, str], labels: dict[str, str]) -> Volume:
        check_name(name)
        existing = self._load(name)
        if existing is not None:
            return existing
        check_options(options)
        data = self._data(name)
        os.makedirs(data, mode=0o755, exist_ok=True)
        os.chmod(os.path.dirname(data), 0o701)
        if self.owner is not None:
            os.chown(data, *self.owner)
        vol = Volume(name=name, driver=self.name, mountpoint=data, created_at=now_rfc3339(),
                     labels=dict(labels), options=dict(options))
        with self.db.tx() as tx:
            tx.execute("INSERT OR REPLACE INTO volumes(name, record) VALUES (?,?)",
                       (name, json.dumps(vol.__dict__)))
        return vol

    def get(self, name: str) -> Volume:
        vol = self._load(name)
        if vol is None:
            raise NotFound(f"get {name}: no such volume")
        return vol

    def list(self) -> list[Volume]:
        return [Volume(**json.loads(r["record"])) for r in self.db.query("SELECT record FROM volumes")]

    def remove(self, name: str) -> None:
        vol = self.get(name)
        data = self._data(name)
        if self._refs.get(name):
            raise Conflict(f"remove {name}: volume is in use")
        if vol.options and self.mounter.is_mounted(data):
            self.mounter.unmount(data)
        if self.mounter.is_mounted(data):
            # never delete through a mount: with o=bind that would be the host's files
            raise SystemError_(f"remove {name}: {data} is still mounted")
        with self.db.tx() as tx:
            tx.execute("DELETE FROM volumes WHERE name=?", (name,))
        shutil.rmtree(os.path.join(self.root, name), ignore_errors=True)

    def mount(self, name: str, ref: str) -> str:
        vol = self.get(name)
        data = self._data(name)
        refs = self._refs.setdefault(name, set())
        if vol.options and not refs and not self.mounter.is_mounted(data):
            os.makedirs(data, exist_ok=True)
            source, fstype, flags, opts = mount_args(vol.options)
            try:
                self.mounter.mount(source, data, fstype, opts, flags)
            except OSError as e:
                raise SystemError_(f"error while mounting volume '{data}': {e}") from None
        refs.add(ref)
        return data

    def unmount(self, name: str, ref: str) -> None:
        refs = self._refs.get(name)
        if refs is None or ref not in refs:
            return
        refs.discard(ref)
        if refs:
            return
        del self._refs[name]
        vol = self._load(name)
        if vol is not None and vol.options:
            self.mounter.unmount(self._data(name))

    def usage(self, name: str) -> int:
        total = 0
        for dirpath, _dirs, files in os.walk(self._data(name)):
            for f in files:
                try:
                    total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
                except OSError:
                    pass
        return total
