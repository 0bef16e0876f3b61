"""Volumes and mounts through real clients: the docker CLI and docker-py against berthd."""

from __future__ import annotations

import io
import json
import os
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import Daemon
from .test_docker_cli import DOCKER, docker

pytestmark = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")


@pytest.fixture
def vname(berthd: Daemon) -> Iterator[str]:
    """A volume name of the test's own, removed afterwards with what uses it."""
    name = f"tv-{uuid.uuid4().hex[:8]}"
    yield name
    users = [c for c in docker(berthd, "ps", "-aq").stdout.split() if name in docker(
        berthd, "inspect", "-f", "{{range .Mounts}}{{.Name}} {{end}}", c, check=False).stdout]
    if users:
        docker(berthd, "rm", "-f", *users, check=False)
    for vol in docker(berthd, "volume", "ls", "-q").stdout.split():
        if vol.startswith(name):
            docker(berthd, "volume", "rm", "-f", vol, check=False)


def test_named_volume_outlives_its_container(berthd: Daemon, vname: str) -> None:
    docker(berthd, "run", "--name", vname, "-v", f"{vname}:/data", "busybox",
           "sh", "-c", "echo kept > /data/f")
    docker(berthd, "rm", vname)
    assert vname in docker(berthd, "volume", "ls", "-q").stdout.split()
    out = docker(berthd, "run", "--rm", "-v", f"{vname}:/data", "busybox", "cat", "/data/f")
    assert out.stdout == "kept\n"
    info = json.loads(docker(berthd, "volume", "inspect", vname).stdout)[0]
    assert info["Driver"] == "local" and info["Mountpoint"].endswith(f"/volumes/{vname}/_data")
    assert Path(info["Mountpoint"], "f").read_text() == "kept\n"


def test_volume_in_use_cannot_be_removed(berthd: Daemon, dockerpy, vname: str) -> None:  # type: ignore[no-untyped-def]
    import docker as dockerlib

    c = dockerpy.containers.create("busybox", "true", volumes={vname: {"bind": "/v", "mode": "rw"}})
    with pytest.raises(dockerlib.errors.APIError) as err:
        dockerpy.api.remove_volume(vname)
    assert err.value.status_code == 409
    assert f"remove {vname}: volume is in use - [{c.id}]" in str(err.value.explanation)
    cli = docker(berthd, "volume", "rm", vname, check=False)
    assert cli.returncode == 1 and "volume is in use" in cli.stderr
    # a stopped container holds its volumes too; once it is gone the volume goes
    c.remove()
    docker(berthd, "volume", "rm", vname)
    assert vname not in docker(berthd, "volume", "ls", "-q").stdout.split()


def test_bind_mounts_ro_and_rw(berthd: Daemon, tmp_path: Path) -> None:
    host = tmp_path / "h"
    host.mkdir()
    (host / "in").write_text("from host\n")
    name = f"bind-{uuid.uuid4().hex[:6]}"
    try:
        docker(berthd, "run", "--name", name, "-v", f"{host}:/h", "busybox",
               "sh", "-c", "cat /h/in && echo back > /h/out")
        assert (host / "out").read_text() == "back\n"
        mounts = json.loads(docker(berthd, "inspect", "-f", "{{json .Mounts}}", name).stdout)
        assert mounts == [{"Type": "bind", "Source": str(host), "Destination": "/h", "Mode": "",
                           "RW": True, "Propagation": "rprivate"}]
        ro = docker(berthd, "run", "--rm", "-v", f"{host}:/h:ro,z", "busybox", "touch", "/h/x", check=False)
        assert ro.returncode != 0 and "Read-only file system" in ro.stderr
        ro2 = docker(berthd, "run", "--rm", "--mount", f"type=bind,src={host},dst=/h,readonly", "busybox",
                     "sh", "-c", "cat /h/in; touch /h/y", check=False)
        assert ro2.stdout == "from host\n" and "Read-only file system" in ro2.stderr
        missing = docker(berthd, "run", "--rm", "--mount", f"type=bind,src={host}/nope,dst=/h", "busybox",
                         "true", check=False)
        assert missing.returncode == 125 and "bind source path does not exist" in missing.stderr
        # -v creates a missing host directory, as docker does
        docker(berthd, "run", "--rm", "-v", f"{host}/made:/m", "busybox", "touch", "/m/f")
        assert (host / "made" / "f").exists()
        assert not list(host.glob("x")) and not list(host.glob("y"))
    finally:
        docker(berthd, "rm", "-f", name, check=False)


def test_tmpfs_mounts_and_read_only_root(berthd: Daemon) -> None:
    out = docker(berthd, "run", "--rm", "--read-only", "--tmpfs", "/tmp:size=1m", "busybox", "sh", "-c",
                 "echo ok > /tmp/f && cat /tmp/f && df -k /tmp | tail -1")
    ok, df = out.stdout.splitlines()
    assert ok == "ok" and "1024" in df.split()
    bad = docker(berthd, "run", "--rm", "--read-only", "--tmpfs", "/tmp", "busybox", "touch", "/etc/x",
                 check=False)
    assert bad.returncode != 0 and "Read-only file system" in bad.stderr
    mnt = docker(berthd, "run", "--rm", "--mount", "type=tmpfs,dst=/t,tmpfs-size=2m,tmpfs-mode=1770",
                 "busybox", "sh", "-c", "stat -c %a /t; df -k /t | tail -1; grep ' /t ' /proc/mounts")
    mode, df, proc = mnt.stdout.splitlines()
    assert mode == "1770" and "2048" in df.split()
    assert "noexec" in proc and "nosuid" in proc


def _image_with_volume(berthd: Daemon, tag: str) -> None:
    """busybox plus /data/seed owned by 1000:1000, with `VOLUME /data` (via docker import)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add("/bin/busybox", "bin/busybox")
        for applet in ("sh", "cat", "ls", "stat", "echo", "true"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        d = tarfile.TarInfo("data")
        d.type, d.mode, d.uid, d.gid = tarfile.DIRTYPE, 0o750, 1000, 1000
        tar.addfile(d)
        data = b"seeded\n"
        f = tarfile.TarInfo("data/seed")
        f.size, f.uid, f.gid = len(data), 1000, 1000
        tar.addfile(f, io.BytesIO(data))
    docker(berthd, "import", "--change", "VOLUME /data", "--change", 'CMD ["sh"]', "-", tag,
           input=buf.getvalue())


def test_image_volume_is_filled_and_rm_v_removes_only_anonymous(berthd: Daemon, vname: str) -> None:
    tag = f"volimg-{uuid.uuid4().hex[:6]}:1"
    _image_with_volume(berthd, tag)
    names = []
    try:
        # anonymous volume from the image's VOLUME, filled from the image with owner and mode
        out = docker(berthd, "run", "--name", f"{vname}-a", tag, "sh", "-c",
                     "cat /data/seed; stat -c '%u:%g %a' /data")
        names.append(f"{vname}-a")
        assert out.stdout == "seeded\n1000:1000 750\n"
        mounts = json.loads(docker(berthd, "inspect", "-f", "{{json .Mounts}}", f"{vname}-a").stdout)
        assert len(mounts) == 1 and mounts[0]["Type"] == "volume" and mounts[0]["Destination"] == "/data"
        anon = mounts[0]["Name"]
        assert len(anon) == 64 and anon in docker(berthd, "volume", "ls", "-q").stdout.split()
        assert docker(berthd, "ps", "-a", "--filter", f"name={vname}-a",
                      "--format", "{{.Mounts}}").stdout.startswith(anon[:12])
        # a new named volume is filled too; nocopy leaves it empty
        assert docker(berthd, "run", "--rm", "-v", f"{vname}:/data", tag, "cat", "/data/seed").stdout == "seeded\n"
        empty = docker(berthd, "run", "--rm", "-v", f"{vname}-nc:/data:nocopy", tag, "ls", "-A", "/data")
        assert empty.stdout == ""
        docker(berthd, "volume", "rm", f"{vname}-nc")
        # -v on rm takes the anonymous volume, never a named one
        docker(berthd, "run", "--name", f"{vname}-b", "-v", f"{vname}:/named", tag, "true")
        names.append(f"{vname}-b")
        docker(berthd, "rm", "-v", f"{vname}-a", f"{vname}-b")
        names.clear()
        vols = docker(berthd, "volume", "ls", "-q").stdout.split()
        assert anon not in vols and vname in vols
    finally:
        if names:
            docker(berthd, "rm", "-f", *names, check=False)
        docker(berthd, "rmi", tag, check=False)


def test_volume_api_labels_filters_and_prune(berthd: Daemon, dockerpy, vname: str) -> None:  # type: ignore[no-untyped-def]
    import docker as dockerlib

    api = dockerpy.api
    vol = api.create_volume(vname, labels={"berth.test": vname})
    assert vol["Labels"] == {"berth.test": vname} and vol["Scope"] == "local"
    assert api.inspect_volume(vname) == vol
    anon = api.create_volume()  # no name: anonymous, so `volume prune` takes it
    c = dockerpy.containers.create("busybox", "true", volumes={vname: {"bind": "/v", "mode": "rw"}})
    try:
        listed = {v["Name"] for v in api.volumes(filters={"label": f"berth.test={vname}"})["Volumes"]}
        assert listed == {vname}
        dangling = {v["Name"] for v in api.volumes(filters={"dangling": True})["Volumes"]}
        assert anon["Name"] in dangling and vname not in dangling
        assert {v["Name"] for v in api.volumes(filters={"name": vname[3:]})["Volumes"]} == {vname}
        with pytest.raises(dockerlib.errors.APIError):
            api.volumes(filters={"bogus": "1"})
        with pytest.raises(dockerlib.errors.NotFound):
            api.inspect_volume(f"{vname}-none")
        with pytest.raises(dockerlib.errors.NotFound):
            api.remove_volume(f"{vname}-none")
        docker(berthd, "volume", "rm", "-f", f"{vname}-none")  # docker-py never sends force
        with pytest.raises(dockerlib.errors.APIError) as err:
            api.create_volume(f"{vname}-x", driver="nosuchdriver")
        assert err.value.status_code == 404
        with pytest.raises(dockerlib.errors.APIError) as err:
            api.create_volume(f"{vname}-x", driver_opts={"bogus": "1"})
        assert err.value.status_code == 400
        pruned = api.prune_volumes(filters={"label": f"berth.test={vname}"})
        assert not pruned.get("VolumesDeleted")  # named, and in use
        pruned = api.prune_volumes(filters={"label": "nosuch.label"})
        assert not pruned.get("VolumesDeleted")
    finally:
        c.remove()
        api.remove_volume(anon["Name"], force=True)


def test_local_driver_tmpfs_options_and_volumes_from(berthd: Daemon, vname: str) -> None:
    docker(berthd, "volume", "create", "-o", "type=tmpfs", "-o", "o=size=1m,uid=1000", vname)
    src = f"{vname}-src"
    try:
        docker(berthd, "run", "-d", "--name", src, "-v", f"{vname}:/v", "busybox", "sleep", "60")
        out = docker(berthd, "run", "--rm", "--volumes-from", f"{src}:ro", "busybox", "sh", "-c",
                     "df -k /v | tail -1; stat -c %u /v; touch /v/x", check=False)
    finally:
        docker(berthd, "rm", "-f", src)
    df, owner = out.stdout.splitlines()
    assert "1024" in df.split() and owner == "1000"
    assert "Read-only file system" in out.stderr
    # unmounted after its last user: the directory is empty again
    info = json.loads(docker(berthd, "volume", "inspect", vname).stdout)[0]
    assert info["Options"] == {"type": "tmpfs", "o": "size=1m,uid=1000"}
    assert os.listdir(info["Mountpoint"]) == []


def test_volumes_and_their_users_survive_a_daemon_restart(fresh_berthd) -> None:  # type: ignore[no-untyped-def]
    d = fresh_berthd()
    docker(d, "volume", "create", "-o", "type=tmpfs", "-o", "o=size=1m", "tv")
    docker(d, "run", "-d", "--name", "user", "-v", "tv:/v", "-v", "plain:/p", "busybox", "sh", "-c",
           "echo x > /v/x; echo y > /p/y; sleep 60")
    d.kill9()
    d.start()
    assert docker(d, "volume", "ls", "-q").stdout.split() == ["plain", "tv"]
    refused = docker(d, "volume", "rm", "plain", check=False)
    assert refused.returncode == 1 and "volume is in use" in refused.stderr
    assert docker(d, "exec", "user", "cat", "/v/x", "/p/y").stdout == "x\ny\n"
    mountpoint = json.loads(docker(d, "volume", "inspect", "tv").stdout)[0]["Mountpoint"]
    docker(d, "rm", "-f", "user")
    # the tmpfs behind `tv` went with its last user, and both volumes can go now
    assert os.listdir(mountpoint) == []
    docker(d, "volume", "rm", "tv", "plain")


def test_berth_cli_volume_commands_and_mount_flags(daemon_host: str, tmp_path: Path) -> None:
    from .test_cli import Berth

    b = Berth(daemon_host)
    vol = f"{b.prefix}-v"
    try:
        assert b.ok("volume", "create", "--label", "k=v", vol) == f"{vol}\n"
        assert vol in b.ok("volume", "ls", "-q", "--filter", "label=k=v").split()
        assert b.ok("volume", "inspect", "-f", "{{.Driver}} {{.Labels.k}}", vol) == "local v\n"
        (tmp_path / "f").write_text("host\n")
        out = b.ok("run", "--rm", "--mount", f"type=volume,src={vol},dst=/v",
                   "--mount", f"type=bind,src={tmp_path},dst=/h,readonly", "--tmpfs", "/t:size=1m",
                   "busybox", "sh", "-c", "cat /h/f; echo in > /v/f; df -k /t | tail -1")
        host, df = out.splitlines()
        assert host == "host" and "1024" in df.split()
        src = b.name("src")
        b.ok("create", "--name", src, "-v", f"{vol}:/data", "busybox", "true")
        assert b.ok("run", "--rm", "--volumes-from", src, "busybox", "cat", "/data/f") == "in\n"
        busy = b("volume", "rm", vol)
        assert busy.returncode == 1 and "volume is in use" in busy.stderr
        b.ok("rm", src)
        b.containers.clear()
        b.ok("volume", "rm", vol)
        assert vol not in b.ok("volume", "ls", "-q").split()
    finally:
        b.cleanup()
        b("volume", "rm", "-f", vol)


def test_local_driver_bind_and_sized_tmpfs_mount_only_while_used(berthd: Daemon, vname: str,
                                                                   tmp_path: Path) -> None:
    from berth.runtime.mount import is_mounted

    (tmp_path / "from-host").write_text("host\n")
    bound, sized = f"{vname}-bind", f"{vname}-tmp"
    docker(berthd, "volume", "create", "-o", "type=none", "-o", "o=bind", "-o", f"device={tmp_path}", bound)
    docker(berthd, "volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=10m", sized)
    data = {v: json.loads(docker(berthd, "volume", "inspect", v).stdout)[0]["Mountpoint"] for v in (bound, sized)}
    assert not is_mounted(data[bound]) and not is_mounted(data[sized])
    user = f"{vname}-user"
    try:
        docker(berthd, "run", "-d", "--name", user, "-v", f"{bound}:/b", "-v", f"{sized}:/t", "busybox", "sh", "-c",
               "echo from-ctr > /b/from-ctr; sleep 60")
        out = docker(berthd, "exec", user, "sh", "-c", "cat /b/from-host; df -k /t | tail -1")
        host_line, df = out.stdout.splitlines()
        assert host_line == "host" and "10240" in df.split()
        assert is_mounted(data[bound]) and is_mounted(data[sized])
    finally:
        docker(berthd, "rm", "-f", user, check=False)
    assert not is_mounted(data[bound]) and not is_mounted(data[sized])
    assert (tmp_path / "from-ctr").read_text() == "from-ctr\n"
    docker(berthd, "volume", "rm", bound, sized)
    assert sorted(os.listdir(tmp_path)) == ["from-ctr", "from-host"]  # removing the volume keeps the host's files
