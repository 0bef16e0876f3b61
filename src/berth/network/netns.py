"""Named network namespaces held by bind mounts under a run directory (`<exec-root>/netns/<id>`).

Not `ip netns`: it remounts /sys. A short-lived thread unshares CLONE_NEWNET (namespaces are per
thread, so the daemon's other threads stay where they are), brings `lo` up with an ioctl and
bind-mounts its own /proc/thread-self/ns/net onto the file. Like `ip netns`, the directory is made a
shared mount on itself, so that a later unmount also reaches copies of it in mount namespaces
created meanwhile (otherwise such a copy would keep the namespace, and its veths, alive).
Deleting is unmount + unlink; the kernel then frees the namespace and every link inside it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import os
import socket
import struct
import threading
from collections.abc import Callable
from typing import TypeVar

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SHARED = 1 << 20
MNT_DETACH = 2
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
NS_GET_NSTYPE = 0xB703
SPARE = ".spare"  # a namespace made ahead of time, for the next container

_prepared: set[str] = set()  # run dirs known to be shared bind mounts (mountinfo is slow to read)
_spare_lock = threading.Lock()
_refilling: dict[str, threading.Thread] = {}

T = TypeVar("T")


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(src: str | None, target: str, flags: int) -> None:
    _check(_libc.mount(src.encode() if src else None, target.encode(), None, flags, None), f"mount {target}")


def _is_mountpoint(path: str) -> bool:
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split(" ", 5)[4] == path for line in f)


def _set_up(ifname: str) -> None:
    """IFF_UP on a link of the calling thread's namespace, by ioctl: no netlink library needed."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH", ifname.encode(), 0)
        flags = struct.unpack("16sH", fcntl.ioctl(s, SIOCGIFFLAGS, req)[:18])[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH", ifname.encode(), flags | IFF_UP))


def in_thread(fn: Callable[[], T]) -> T:
    """Run `fn` in a fresh thread and return its result (or raise its exception): the way to change
    namespaces without touching the calling thread."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["v"] = fn()
        except BaseException as e:  # noqa: B036 - handed back to the caller below
            box["e"] = e

    t = threading.Thread(target=run, name="berth-netns")
    t.start()
    t.join()
    if "e" in box:
        raise box["e"]  # type: ignore[misc]
    return box["v"]  # type: ignore[return-value]


def enter(path: str) -> None:
    """setns the calling thread into the network namespace at `path` (use inside `in_thread`)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.setns(fd, CLONE_NEWNET), f"setns {path}")
    finally:
        os.close(fd)


def run_in(path: str, fn: Callable[[], T]) -> T:
    """`fn()` in a thread inside the namespace at `path`; sockets it creates stay in that namespace."""
    def inside() -> T:
        enter(path)
        return fn()
    return in_thread(inside)


def _prepare_dir(run_dir: str) -> None:
    os.makedirs(run_dir, mode=0o711, exist_ok=True)
    if not _is_mountpoint(run_dir):
        _mount(run_dir, run_dir, MS_BIND | MS_REC)
    _mount(None, run_dir, MS_SHARED | MS_REC)


def _ensure_dir(run_dir: str) -> None:
    if run_dir in _prepared:
        return
    if not os.path.isdir(run_dir) or not _is_mountpoint(run_dir):
        _prepare_dir(run_dir)
    _prepared.add(run_dir)


def _make_here(path: str) -> None:
    """In a thread of its own: unshare a new namespace, `lo` up, bind it onto `path`."""
    _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
    _set_up("lo")
    # /proc/self would name the thread group leader's namespace, not this thread's.
    _mount("/proc/thread-self/ns/net", path, MS_BIND)


def create(run_dir: str, name: str, spare: bool = True) -> str:
    """A new network namespace with `lo` up, held at `<run_dir>/<name>`; returns that path.
    With `spare`, the namespace made ahead of time in the background is taken if there is one
    (making one costs the kernel 2-3 ms, on the path of every container start) and another made."""
    path = os.path.join(run_dir, name)
    _ensure_dir(run_dir)
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    os.close(fd)
    try:
        if not (spare and _take_spare(run_dir, path)):
            in_thread(lambda: _make_here(path))
    except BaseException:
        os.unlink(path)
        raise
    if spare:
        _refill(run_dir)
    return path


def _is_netns(path: str) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return fcntl.ioctl(fd, NS_GET_NSTYPE) == CLONE_NEWNET
    except OSError:
        return False  # a plain file: the spare is still being made
    finally:
        os.close(fd)


def _take_spare(run_dir: str, path: str) -> bool:
    spare = os.path.join(run_dir, SPARE)
    with _spare_lock:
        if not _is_netns(spare):
            return False
        _mount(spare, path, MS_BIND)
        delete(spare)
    return True


def _refill(run_dir: str) -> None:
    with _spare_lock:
        if run_dir in _refilling or os.path.exists(os.path.join(run_dir, SPARE)):
            return
        worker = _refilling[run_dir] = threading.Thread(target=lambda: make_spare(), name="berth-netns-spare",
                                                        daemon=True)

    def make_spare() -> None:
        spare = os.path.join(run_dir, SPARE)
        try:
            fd = os.open(spare, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
            os.close(fd)
            try:
                _make_here(spare)
            except OSError:
                os.unlink(spare)
        except OSError:
            pass
        finally:
            with _spare_lock:
                _refilling.pop(run_dir, None)

    worker.start()


def delete(path: str) -> None:
    """Unmount and unlink; quiet if already gone, so it is safe in cleanup and recovery paths."""
    if _libc.umount2(path.encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (22, 2):  # EINVAL: not mounted; ENOENT: no file
            raise OSError(err, f"umount {path}: {os.strerror(err)}")
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def exists(path: str) -> bool:
    return _is_mountpoint(path)


def release_dir(run_dir: str) -> None:
    """Undo the directory's own bind mount once no namespace is left in it (daemon shutdown, tests)."""
    worker = _refilling.get(run_dir)
    if worker is not None:
        worker.join()
    with _spare_lock:
        delete(os.path.join(run_dir, SPARE))
        _prepared.discard(run_dir)
    if os.path.isdir(run_dir) and not os.listdir(run_dir):
        if _libc.umount2(run_dir.encode(), MNT_DETACH) != 0:
            err = ctypes.get_errno()
            if err not in (22, 2):
                raise OSError(err, f"umount {run_dir}: {os.strerror(err)}")
        os.rmdir(run_dir)
