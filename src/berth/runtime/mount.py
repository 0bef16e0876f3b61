"""mount(2)/umount2(2) through libc: the runtime performs the mounts the snapshotter describes."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
MNT_DETACH = 2
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8


def mount(source: str, target: str, fstype: str, options: list[str], flags: int = 0) -> None:
    data = ",".join(options).encode()
    if _libc.mount(source.encode(), target.encode(), fstype.encode(), flags, data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype} on {target}: {os.strerror(err)}")


def unmount(target: str) -> None:
    if _libc.umount2(target.encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (22, 2):  # EINVAL: not a mount point; ENOENT: gone
            raise OSError(err, f"umount {target}: {os.strerror(err)}")


def is_mounted(target: str) -> bool:
    target = os.path.realpath(target)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            if line.split(" ", 5)[4] == target:
                return True
    return False
