"""User namespace remapping (`berthd --userns-remap`): the ID map, a namespace holding it, and
root filesystems whose image layers appear shifted through idmapped mounts.

Layers stay on disk with the image's own owners (so commit, diff, save and cp of stopped
containers need no translation); at mount time each lower layer and the writable layer are
cloned as idmapped mounts (`open_tree` + `mount_setattr(MOUNT_ATTR_IDMAP)`) and overlay is
mounted over those detached clones. overlay works in the mounter's credentials, which must be
mappable through the idmapped upper layer: the mount is made from a short-lived thread whose
fsuid/fsgid are the remapped root's, with its capabilities kept (both are per-thread).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import pwd
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from berth.common.errors import InvalidParameter

T = TypeVar("T")
DEFAULT_USER = "dockremap"  # docker's name for `--userns-remap default`
_RANGE_START, _RANGE_LEN = 100000, 65536  # where dockerd puts a new user's subordinate range
OVERFLOW_ID = 65534  # what the kernel shows for an ID with no mapping (nobody/nogroup)

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
# x86_64/aarch64 share these numbers (the new mount API came after the syscall table unification)
_SYS_OPEN_TREE, _SYS_MOUNT_SETATTR = 428, 442
_SYS_CAPGET, _SYS_CAPSET = (125, 126) if os.uname().machine == "x86_64" else (90, 91)
_OPEN_TREE_CLONE, _OPEN_TREE_CLOEXEC, _AT_EMPTY_PATH = 1, 0o2000000, 0x1000
_MOUNT_ATTR_IDMAP = 0x00100000
_CAP_VERSION_3 = 0x20080522


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


@dataclass(frozen=True)
class IdRange:
    container: int  # first ID inside the namespace
    host: int  # the host ID it maps to
    size: int


@dataclass(frozen=True)
class IdMap:
    """Container IDs to host IDs, from the remap user's /etc/subuid and /etc/subgid ranges
    laid end to end from 0, as dockerd does."""

    user: str
    group: str
    uids: tuple[IdRange, ...]
    gids: tuple[IdRange, ...]

    @property
    def root_uid(self) -> int:
        return _to_host(self.uids, 0)

    @property
    def root_gid(self) -> int:
        return _to_host(self.gids, 0)

    def to_host(self, uid: int, gid: int) -> tuple[int, int]:
        return _to_host(self.uids, uid), _to_host(self.gids, gid)

    def to_container(self, uid: int, gid: int) -> tuple[int, int]:
        """A host owner as the container sees it; unmapped ones show as the kernel's overflow ID."""
        return _to_container(self.uids, uid), _to_container(self.gids, gid)

    def oci(self) -> tuple[list[dict[str, int]], list[dict[str, int]]]:
        """OCI `linux.uidMappings` and `linux.gidMappings`."""
        def conv(rs: tuple[IdRange, ...]) -> list[dict[str, int]]:
            return [{"containerID": r.container, "hostID": r.host, "size": r.size} for r in rs]
        return conv(self.uids), conv(self.gids)

    def proc_lines(self, ranges: tuple[IdRange, ...]) -> str:
        return "".join(f"{r.container} {r.host} {r.size}\n" for r in ranges)


def _to_host(ranges: tuple[IdRange, ...], cid: int) -> int:
    for r in ranges:
        if r.container <= cid < r.container + r.size:
            return r.host + cid - r.container
    raise InvalidParameter(f"id {cid} is not mapped by the daemon's user namespace remapping")


def _to_container(ranges: tuple[IdRange, ...], hid: int) -> int:
    for r in ranges:
        if r.host <= hid < r.host + r.size:
            return r.container + hid - r.host
    return OVERFLOW_ID


def parse_subordinate(text: str, names: tuple[str, ...]) -> list[tuple[int, int]]:
    """(start, count) ranges of /etc/subuid or /etc/subgid lines whose owner is one of `names`
    (a name or a numeric ID), in file order."""
    out = []
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) != 3 or parts[0] not in names:
            continue
        try:
            start, count = int(parts[1]), int(parts[2])
        except ValueError:
            continue
        if count > 0:
            out.append((start, count))
    return out


def stacked(ranges: list[tuple[int, int]]) -> tuple[IdRange, ...]:
    out, next_id = [], 0
    for start, count in ranges:
        out.append(IdRange(next_id, start, count))
        next_id += count
    return tuple(out)


def next_range_start(text: str) -> int:
    """dockerd's choice for a new subordinate range: 100000, moved past any range it overlaps."""
    start = _RANGE_START
    for _name, first, count in sorted(_all_ranges(text), key=lambda r: r[1]):
        if first < start + _RANGE_LEN and start < first + count:
            start = first + count
    return start


def _all_ranges(text: str) -> list[tuple[str, int, int]]:
    out = []
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            out.append((parts[0], int(parts[1]), int(parts[2])))
    return out


def parse_remap_value(value: str) -> tuple[str, str]:
    """`default` | `USER` | `USER:GROUP` (names or IDs) -> (user, group or "")."""
    user, _, group = value.partition(":")
    if not user:
        raise ValueError(f"invalid --userns-remap value {value!r}: want default, USER or USER:GROUP")
    return user, group


def load_map(value: str, subuid: str = "/etc/subuid", subgid: str = "/etc/subgid") -> IdMap:
    """The ID map for an --userns-remap value; `default` creates the `dockremap` user and its
    ranges first if need be (useradd/usermod, as dockerd). Raises ValueError with the reason."""
    user, group = parse_remap_value(value)
    if user == "default":
        user, group = DEFAULT_USER, DEFAULT_USER
        _ensure_default_user(subuid, subgid)
    try:
        entry = pwd.getpwnam(user) if not user.isdigit() else pwd.getpwuid(int(user))
    except KeyError:
        raise ValueError(f"cannot find user {user!r} for --userns-remap") from None
    group = group or entry.pw_name
    user_names = (entry.pw_name, str(entry.pw_uid))
    group_names = (group, _group_name(int(group))) if group.isdigit() else (group, _group_id(group))
    uids = stacked(parse_subordinate(_read(subuid), user_names))
    gids = stacked(parse_subordinate(_read(subgid), group_names))
    if not uids:
        raise ValueError(f"no subuid ranges found for user {entry.pw_name!r} in {subuid}")
    if not gids:
        raise ValueError(f"no subgid ranges found for group {group!r} in {subgid}")
    return IdMap(entry.pw_name, group, uids, gids)


def _group_id(name: str) -> str:
    import grp

    try:
        return str(grp.getgrnam(name).gr_gid)
    except KeyError:
        raise ValueError(f"cannot find group {name!r} for --userns-remap") from None


def _group_name(gid: int) -> str:
    import grp

    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def _ensure_default_user(subuid: str, subgid: str) -> None:
    try:
        pwd.getpwnam(DEFAULT_USER)
    except KeyError:
        res = subprocess.run(["useradd", "-r", "-s", "/bin/false", DEFAULT_USER], capture_output=True, text=True,
                             check=False)
        if res.returncode != 0 and res.returncode != 9:  # 9: created meanwhile by another daemon
            raise ValueError(f"cannot create the {DEFAULT_USER} user: {res.stderr.strip()}") from None
    for path, flag in ((subuid, "-v"), (subgid, "-w")):
        text = _read(path)
        if parse_subordinate(text, (DEFAULT_USER,)):
            continue
        start = next_range_start(text)
        res = subprocess.run(["usermod", flag, f"{start}-{start + _RANGE_LEN - 1}", DEFAULT_USER],
                             capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise ValueError(f"cannot add subordinate ranges for {DEFAULT_USER}: {res.stderr.strip()}")


class UserNamespace:
    """A user namespace with the daemon's map, held by an open descriptor for idmapped mounts.
    The process that made it is gone at once: the descriptor keeps the namespace alive."""

    def __init__(self, idmap: IdMap) -> None:
        self.idmap = idmap
        self.fd = self._make()

    def _make(self) -> int:
        ours = os.readlink("/proc/self/ns/user")
        proc = subprocess.Popen(["unshare", "--user", "sleep", "30"], stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while os.readlink(f"/proc/{proc.pid}/ns/user") == ours:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise OSError("could not create a user namespace for the ID map")
                time.sleep(0.001)
            with open(f"/proc/{proc.pid}/uid_map", "w") as f:
                f.write(self.idmap.proc_lines(self.idmap.uids))
            with open(f"/proc/{proc.pid}/gid_map", "w") as f:
                f.write(self.idmap.proc_lines(self.idmap.gids))
            return os.open(f"/proc/{proc.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        finally:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        os.close(self.fd)

    def idmapped_clone(self, path: str) -> int:
        """A detached copy of the mount at `path` that shows its files through the map."""
        fd = _libc.syscall(_SYS_OPEN_TREE, -100, path.encode(), _OPEN_TREE_CLONE | _OPEN_TREE_CLOEXEC)
        if fd < 0:
            _raise(f"open_tree {path}")
        attr = _MountAttr(_MOUNT_ATTR_IDMAP, 0, 0, self.fd)
        if _libc.syscall(_SYS_MOUNT_SETATTR, fd, b"", _AT_EMPTY_PATH, ctypes.byref(attr), ctypes.sizeof(attr)) < 0:
            os.close(fd)
            _raise(f"idmapped mount of {path}")
        return int(fd)

    def mount_overlay(self, options: list[str], target: str) -> None:
        """Mount overlay at `target` from a snapshotter's options, every layer idmapped.
        upperdir and workdir must share their parent directory (one clone serves both)."""
        opts = dict(o.split("=", 1) for o in options)
        fds: list[int] = []
        try:
            lowers = []
            for lower in opts["lowerdir"].split(":"):
                fds.append(self.idmapped_clone(lower))
                lowers.append(f"/proc/self/fd/{fds[-1]}")
            out = [f"lowerdir={':'.join(lowers)}"]
            if "upperdir" in opts:
                parent = os.path.dirname(opts["upperdir"])
                if os.path.dirname(opts["workdir"]) != parent:
                    raise InvalidParameter("upperdir and workdir must share a parent to be idmapped")
                fds.append(self.idmapped_clone(parent))
                base = f"/proc/self/fd/{fds[-1]}"
                out += [f"upperdir={base}/{os.path.basename(opts['upperdir'])}",
                        f"workdir={base}/{os.path.basename(opts['workdir'])}"]
            data = ",".join(out).encode()

            def mount() -> None:
                if _libc.mount(b"overlay", target.encode(), b"overlay", 0, data) != 0:
                    _raise(f"mount overlay on {target}")

            self.as_root(mount)
        finally:
            for fd in fds:
                os.close(fd)

    def as_root(self, fn: Callable[[], T]) -> T:
        """Run `fn` in a thread whose file-system IDs are the remapped root's, capabilities kept:
        what it creates through an idmapped mount is owned by root inside the namespace."""
        result: list[T] = []
        error: list[BaseException] = []

        def run() -> None:
            try:
                _libc.setfsuid(self.idmap.root_uid)
                _libc.setfsgid(self.idmap.root_gid)
                _raise_effective_caps()  # the fsuid change dropped the file capabilities
                result.append(fn())
            except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
                error.append(e)

        t = threading.Thread(target=run, name="userns-root")
        t.start()
        t.join()
        if error:
            raise error[0]
        return result[0]


def _raise_effective_caps() -> None:
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    if _libc.syscall(_SYS_CAPGET, ctypes.byref(header), data) < 0:
        _raise("capget")
    for d in data:
        d.effective = d.permitted
    if _libc.syscall(_SYS_CAPSET, ctypes.byref(header), data) < 0:
        _raise("capset")


def _raise(what: str) -> None:
    err = ctypes.get_errno()
    raise OSError(err, f"{what}: {os.strerror(err)}")


def check_traversable(path: str, uid: int, gid: int) -> str | None:
    """dockerd's check: every directory above the data root must let the remapped root through
    (o+x, or g+x for its group, or owned by it); returns the first that does not."""
    d = os.path.dirname(os.path.abspath(path))
    while d != "/":
        st = os.stat(d)
        if st.st_uid == uid:
            ok = bool(st.st_mode & 0o100)
        elif st.st_gid == gid:
            ok = bool(st.st_mode & 0o010)
        else:
            ok = bool(st.st_mode & 0o001)
        if not ok:
            return d
        d = os.path.dirname(d)
    return None
