"""`--user` resolution against an image's passwd/group, including hostile symlinks."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from berth.common.errors import InvalidParameter
from berth.runtime.users import resolve_groups, resolve_user

PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
app:x:1000:1000:app:/home/app:/bin/sh

garbage line
nobody:x:65534:65534:nobody:/home:/bin/false
"""
GROUP = """root:x:0:
wheel:x:10:root,app
app:x:1000:
video:x:44:app
nogroup:x:65534:
"""


def make_rootfs(root: Path, passwd: str | None = PASSWD, group: str | None = GROUP) -> Path:
    (root / "etc").mkdir(parents=True)
    if passwd is not None:
        (root / "etc/passwd").write_text(passwd)
    if group is not None:
        (root / "etc/group").write_text(group)
    return root


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("", (0, 0, [10])),
        ("root", (0, 0, [10])),
        ("app", (1000, 1000, [10, 44])),
        ("1000", (1000, 1000, [10, 44])),
        ("nobody", (65534, 65534, [])),
        ("4242", (4242, 0, [])),  # a numeric uid not in passwd is fine, gid 0
        ("app:video", (1000, 44, [])),  # an explicit group: no supplementary groups (as runc)
        ("app:4242", (1000, 4242, [])),
        ("1000:50", (1000, 50, [])),
        ("4242:wheel", (4242, 10, [])),
        ("nobody:root", (65534, 0, [])),
    ],
)
def test_forms(tmp_path: Path, user: str, expected: tuple[int, int, list[int]]) -> None:
    assert resolve_user(str(make_rootfs(tmp_path)), user) == expected


def test_errors(tmp_path: Path) -> None:
    root = str(make_rootfs(tmp_path))
    with pytest.raises(
        InvalidParameter, match="^unable to find user ghost: no matching entries in passwd file$"
    ):
        resolve_user(root, "ghost")
    with pytest.raises(
        InvalidParameter, match="unable to find group ghosts: no matching entries in group file"
    ):
        resolve_user(root, "app:ghosts")
    with pytest.raises(InvalidParameter, match="uids and gids must be in range"):
        resolve_user(root, "-1")
    with pytest.raises(InvalidParameter, match="uids and gids must be in range"):
        resolve_user(root, "0:4294967296")


def test_no_etc_files(tmp_path: Path) -> None:
    root = str(make_rootfs(tmp_path, passwd=None, group=None))
    assert resolve_user(root, "") == (0, 0, [])
    assert resolve_user(root, "1000:1000") == (1000, 1000, [])
    with pytest.raises(InvalidParameter, match="unable to find user app"):
        resolve_user(root, "app")


def test_group_add(tmp_path: Path) -> None:
    root = str(make_rootfs(tmp_path))
    assert resolve_groups(root, ["video", "7", "wheel"]) == [44, 7, 10]
    with pytest.raises(InvalidParameter, match="unable to find group nope"):
        resolve_groups(root, ["nope"])


def host_secret(tmp_path: Path) -> Path:
    """A 'host' passwd outside the rootfs with a user the image does not have."""
    outside = tmp_path / "host"
    outside.mkdir()
    (outside / "passwd").write_text("hostonly:x:4000:4000::/:/bin/sh\n")
    return outside


@pytest.mark.parametrize(
    "target",
    [
        "../../host/passwd",  # relative escape
        "/../../host/passwd",  # absolute: `/` is the rootfs, `..` stops there
        "{outside}/passwd",  # the host's absolute path
    ],
)
def test_symlinked_passwd_cannot_escape(tmp_path: Path, target: str) -> None:
    outside = host_secret(tmp_path)
    root = make_rootfs(tmp_path / "rootfs", passwd=None)
    os.symlink(target.format(outside=outside), root / "etc/passwd")
    with pytest.raises(InvalidParameter, match="unable to find user hostonly"):
        resolve_user(str(root), "hostonly")


def test_symlinked_etc_directory_cannot_escape(tmp_path: Path) -> None:
    outside = host_secret(tmp_path)
    root = tmp_path / "rootfs"
    root.mkdir()
    os.symlink(str(outside), root / "etc")
    with pytest.raises(InvalidParameter, match="unable to find user hostonly"):
        resolve_user(str(root), "hostonly")


def test_symlinks_inside_the_rootfs_are_followed(tmp_path: Path) -> None:
    """An image may legitimately link /etc/passwd elsewhere inside itself (absolute or relative)."""
    root = make_rootfs(tmp_path, passwd=None, group=None)
    (root / "usr/share/base").mkdir(parents=True)
    (root / "usr/share/base/passwd").write_text(PASSWD)
    (root / "usr/share/base/group").write_text(GROUP)
    os.symlink("/usr/share/base/passwd", root / "etc/passwd")
    os.symlink("../usr/./share/base/group", root / "etc/group")
    assert resolve_user(str(root), "app") == (1000, 1000, [10, 44])


def test_symlink_loop_and_fifo_do_not_hang(tmp_path: Path) -> None:
    root = make_rootfs(tmp_path, passwd=None, group=None)
    os.symlink("passwd", root / "etc/passwd")  # a loop
    os.mkfifo(root / "etc/group")
    result: list[object] = []
    t = threading.Thread(target=lambda: result.append(resolve_user(str(root), "1:2")), daemon=True)
    t.start()
    t.join(5)
    assert result == [(1, 2, [])]
