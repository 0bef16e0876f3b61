"""The local volume driver (with a fake mounter), mount-option parsing, and `--mount` flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from berth.cli.runopts import OptionError, parse_mount, parse_tmpfs, ram_in_bytes
from berth.common.db import Database
from berth.common.errors import Conflict, InvalidParameter, NotFound
from berth.daemon.mounts import _tmpfs_options, resolve_in
from berth.volumes.local import LocalDriver, mount_args


class FakeMounter:
    def __init__(self) -> None:
        self.mounted: dict[str, tuple[str, str, list[str], int]] = {}

    def mount(self, source: str, target: str, fstype: str, options: list[str], flags: int = 0) -> None:
        self.mounted[target] = (source, fstype, options, flags)

    def unmount(self, target: str) -> None:
        self.mounted.pop(target, None)

    def is_mounted(self, target: str) -> bool:
        return target in self.mounted


@pytest.fixture
def driver(tmp_path: Path) -> tuple[LocalDriver, FakeMounter]:
    m = FakeMounter()
    return LocalDriver(str(tmp_path / "volumes"), Database(str(tmp_path / "db")), m), m


def test_create_get_list_remove(driver: tuple[LocalDriver, FakeMounter]) -> None:
    d, _ = driver
    v = d.create("data", {}, {"a": "b"})
    assert v.mountpoint.endswith("/volumes/data/_data") and Path(v.mountpoint).is_dir()
    assert d.create("data", {}, {"other": "x"}).labels == {"a": "b"}  # existing one is returned
    assert d.get("data").to_api()["Labels"] == {"a": "b"}
    assert [x.name for x in d.list()] == ["data"]
    Path(v.mountpoint, "f").write_text("x")
    assert d.usage("data") > 0
    d.remove("data")
    assert not Path(v.mountpoint).exists()
    with pytest.raises(NotFound):
        d.get("data")


@pytest.mark.parametrize("name", ["a", "-x", "has/slash", "sp ace"])
def test_bad_names(driver: tuple[LocalDriver, FakeMounter], name: str) -> None:
    with pytest.raises(InvalidParameter):
        driver[0].create(name, {}, {})


@pytest.mark.parametrize("opts", [{"bogus": "1"}, {"type": ""}, {"o": "size=1m"}])
def test_bad_options(driver: tuple[LocalDriver, FakeMounter], opts: dict[str, str]) -> None:
    with pytest.raises(InvalidParameter):
        driver[0].create("vv", opts, {})


def test_option_volume_is_mounted_by_first_ref_and_released_by_last(
        driver: tuple[LocalDriver, FakeMounter]) -> None:
    d, m = driver
    v = d.create("tv", {"type": "tmpfs", "o": "size=1m,noexec"}, {})
    assert d.mount("tv", "c1") == v.mountpoint
    d.mount("tv", "c2")
    assert m.mounted[v.mountpoint] == ("tmpfs", "tmpfs", ["size=1m"], 8)
    with pytest.raises(Conflict):
        d.remove("tv")
    d.unmount("tv", "c1")
    assert v.mountpoint in m.mounted
    d.unmount("tv", "c2")
    d.unmount("tv", "c3")  # unknown refs are ignored
    assert v.mountpoint not in m.mounted
    d.remove("tv")


def test_mount_args() -> None:
    assert mount_args({"type": "none", "o": "bind,ro", "device": "/srv"}) == ("/srv", "none", 4096 | 1, [])
    assert mount_args({"type": "nfs", "o": "addr=1.2.3.4,rw", "device": ":/x"}) == (":/x", "nfs", 0, ["addr=1.2.3.4"])


def test_tmpfs_options_user_words_win() -> None:
    assert _tmpfs_options("", True) == ["noexec", "nosuid", "nodev", "rprivate"]
    assert _tmpfs_options("exec,size=1m", False) == ["nosuid", "nodev", "rprivate", "ro", "exec", "size=1m"]


def test_resolve_in_keeps_symlinks_inside(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to("/real")
    (tmp_path / "up").symlink_to("../../../../etc")
    assert resolve_in(str(tmp_path), "/link") == str(tmp_path / "real")
    assert resolve_in(str(tmp_path), "/up") == str(tmp_path / "etc")


def test_parse_mount_flags() -> None:
    assert parse_mount("type=bind,source=/a,target=/b,readonly,bind-propagation=rslave") == {
        "Type": "bind", "Source": "/a", "Target": "/b", "ReadOnly": True,
        "BindOptions": {"Propagation": "rslave"}}
    assert parse_mount("src=v,dst=/d,volume-nocopy,volume-label=k=v,volume-opt=type=tmpfs") == {
        "Type": "volume", "Source": "v", "Target": "/d",
        "VolumeOptions": {"NoCopy": True, "Labels": {"k": "v"}, "DriverConfig": {"Options": {"type": "tmpfs"}}}}
    assert parse_mount("type=tmpfs,dst=/t,tmpfs-size=64m,tmpfs-mode=1770") == {
        "Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 64 << 20, "Mode": 0o1770}}
    assert parse_mount("type=volume,dst=/x,ro=false")["ReadOnly"] is False
    for bad in ("type=bind,src=/a", "type=bind,target=/b,bogus=1", "dst=/b,novalue"):
        with pytest.raises(OptionError):
            parse_mount(bad)
    assert parse_tmpfs(["/run", "/tmp:rw,size=1m"]) == {"/run": "", "/tmp": "rw,size=1m"}
    assert ram_in_bytes("1g") == 1 << 30 and ram_in_bytes("512kb") == 512 << 10 and ram_in_bytes("10") == 10
