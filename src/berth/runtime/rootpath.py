"""Resolve paths inside a container's root filesystem as the container would see them.

Used by `cp` (the archive endpoints): a path given by a user is resolved with every symlink
followed *inside* the root (an absolute target or a `..` stops at the root, as after chroot),
through openat2(2) with RESOLVE_IN_ROOT, so nothing outside the root can be reached however the
container arranged its links (CVE-2018-15664, CVE-2019-14271 were docker's failures here). The
result is a descriptor; callers work relative to it and never go back to a path string.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import platform

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_SYS_OPENAT2 = 437  # the same number on every architecture that has it
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10
_DIR_PATH_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def open_in_root(root_fd: int, path: str, flags: int) -> int:
    """openat2(root_fd, path, flags) with RESOLVE_IN_ROOT: `path` (absolute or not) is looked up
    as if `root_fd` were `/`. Raises OSError (FileNotFoundError, NotADirectoryError, ...)."""
    rel = path.lstrip("/") or "."
    how = _OpenHow(flags | os.O_CLOEXEC, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    while True:
        fd = _libc.syscall(_SYS_OPENAT2, root_fd, rel.encode(), ctypes.byref(how), ctypes.sizeof(how))
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        if err in (errno.EAGAIN, errno.EINTR):  # EAGAIN: a rename raced the lookup; try again
            continue
        if err == errno.ENOSYS:
            raise OSError(err, f"openat2 is not available on this kernel ({platform.release()})")
        raise OSError(err, f"{os.strerror(err)}: {path}")


def split_container_path(path: str) -> tuple[str, str]:
    """Docker's ResolvePath split: the directory part (resolved, symlinks followed in the root)
    and the last element (kept as is, so a final symlink is the link itself). A last element
    of "", "." or ".." means the path names a directory to be resolved whole: ("dir", "")."""
    absolute = "/" + path.lstrip("/")
    head, _, base = absolute.rpartition("/")
    if base in ("", ".", ".."):
        return absolute, ""
    return head or "/", base


def open_parent(root_fd: int, path: str) -> tuple[int, str]:
    """(O_PATH descriptor of the directory that holds the path's last element, that element).
    When the element is "" the descriptor is the path itself (a directory)."""
    head, base = split_container_path(path)
    return open_in_root(root_fd, head, _DIR_PATH_FLAGS), base


def open_dir(root_fd: int, path: str) -> int:
    """An O_PATH descriptor of the directory `path`, its last element followed too (in the root)."""
    return open_in_root(root_fd, path, _DIR_PATH_FLAGS)
