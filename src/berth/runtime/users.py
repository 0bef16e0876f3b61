"""Resolve docker's `--user` and `--group-add` against an image's /etc/passwd and /etc/group.

The files are read from the container's root filesystem, which an image author controls: every
path component is opened relative to the rootfs with O_NOFOLLOW, and symlinks are resolved as if
the rootfs were `/` (an absolute target or `..` never leaves it), so a link such as
`/etc/passwd -> /../../../etc/passwd` reads the image's own file, never the host's.
This module reads files; it never writes into the rootfs.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

from berth.common.errors import InvalidParameter

MAX_ID = 2**31 - 1
_MAX_SYMLINKS = 40  # the kernel's own limit for one path walk
_MAX_FILE = 4 * 1024 * 1024  # a passwd file larger than this is hostile, not real


@dataclass(frozen=True)
class _Entry:
    name: str
    id: int
    gid: int  # passwd only
    members: tuple[str, ...]  # group only


def resolve_user(rootfs: str, user: str) -> tuple[int, int, list[int]]:
    """Return (uid, gid, supplementary gids) for a docker `--user` value.

    Forms: "" (root), "name", "uid", "name:group", "uid:gid", "uid:groupname", "name:gid".
    Supplementary gids are only looked up in the implicit form (no group given), as runc's
    libcontainer does; they are the groups whose member list names the user.
    """
    user_arg, _, group_arg = user.partition(":")
    passwd = _parse(_read_in_root(rootfs, "/etc/passwd"), passwd=True)
    uid_num = _number(user_arg)

    if user_arg == "":
        matches = [e for e in passwd if e.id == 0]
    elif uid_num is not None:
        matches = [e for e in passwd if e.id == uid_num]
    else:
        matches = [e for e in passwd if e.name == user_arg]

    uid, gid = 0, 0
    if matches:
        uid, gid = matches[0].id, matches[0].gid
    elif user_arg:
        if uid_num is None:
            raise InvalidParameter(f"unable to find user {user_arg}: no matching entries in passwd file")
        uid = _in_range(uid_num)

    groups = _parse(_read_in_root(rootfs, "/etc/group"), passwd=False)
    if group_arg:
        return uid, _resolve_group(groups, group_arg), []
    if not matches:
        return uid, gid, []
    name = matches[0].name
    return uid, gid, [g.id for g in groups if name in g.members]


def resolve_groups(rootfs: str, groups: list[str]) -> list[int]:
    """Resolve `--group-add` values (names or numbers) to gids via the image's /etc/group."""
    if not groups:
        return []
    entries = _parse(_read_in_root(rootfs, "/etc/group"), passwd=False)
    return [_resolve_group(entries, g) for g in groups]


def _resolve_group(entries: list[_Entry], group: str) -> int:
    num = _number(group)
    for e in entries:
        if (num is not None and e.id == num) or (num is None and e.name == group):
            return e.id
    if num is None:
        raise InvalidParameter(f"unable to find group {group}: no matching entries in group file")
    return _in_range(num)


def _number(text: str) -> int | None:
    # Go's Atoi accepts a sign; a negative id then fails the range check, as in runc.
    try:
        return int(text, 10)
    except ValueError:
        return None


def _in_range(value: int) -> int:
    if not 0 <= value <= MAX_ID:
        raise InvalidParameter(f"uids and gids must be in range 0-{MAX_ID}")
    return value


def _parse(text: str, *, passwd: bool) -> list[_Entry]:
    """Parse passwd (`name:x:uid:gid:...`) or group (`name:x:gid:a,b`) lines, skipping bad ones."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        f = line.split(":")
        try:
            if passwd:
                out.append(_Entry(f[0], int(f[2]), int(f[3]), ()))
            else:
                members = tuple(m for m in f[3].split(",") if m) if len(f) > 3 else ()
                out.append(_Entry(f[0], int(f[2]), 0, members))
        except (IndexError, ValueError):
            continue
    return out


def _read_in_root(rootfs: str, path: str) -> str:
    """Read `path` inside `rootfs` without ever leaving it; "" when absent or not a regular file."""
    try:
        fd = _open_in_root(rootfs, path)
    except OSError:
        return ""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(_MAX_FILE)
        return data.decode("utf-8", "replace")
    finally:
        os.close(fd)


def _open_in_root(rootfs: str, path: str) -> int:
    """Open `path` read-only, resolving symlinks as though `rootfs` were `/`.

    Each step opens one component relative to the fd of its parent with O_NOFOLLOW, so a link
    swapped in after it was examined makes the open fail instead of escaping.
    """
    root = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    stack = [root]  # fds of the directories walked so far; stack[0] is the rootfs
    pending = [p for p in path.split("/") if p]
    links = 0
    try:
        while pending:
            name = pending.pop(0)
            if name == ".":
                continue
            if name == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            parent = stack[-1]
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > _MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, "too many symlinks", path)
                target = os.readlink(name, dir_fd=parent)
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                pending = [p for p in target.split("/") if p] + pending
                continue
            flags = os.O_NOFOLLOW | os.O_CLOEXEC
            if pending:
                stack.append(os.open(name, flags | os.O_PATH | os.O_DIRECTORY, dir_fd=parent))
            else:
                # O_NONBLOCK: a FIFO planted at /etc/passwd must not hang the daemon.
                return os.open(name, flags | os.O_RDONLY | os.O_NONBLOCK, dir_fd=parent)
        raise OSError(errno.EISDIR, "not a file", path)
    finally:
        for fd in stack:
            os.close(fd)
