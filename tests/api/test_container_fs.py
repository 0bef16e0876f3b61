"""A container's filesystem through real clients: commit, export, cp both ways (docker CLI and
docker-py), and cp never leaving the container's root whatever its symlinks say."""

from __future__ import annotations

import base64
import io
import json
import os
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from ..conftest import Daemon
from .test_docker_cli import DOCKER
from .test_docker_cli import docker as docker_cli


@pytest.fixture
def ctr(dockerpy: docker.DockerClient) -> Iterator[docker.models.containers.Container]:
    c = dockerpy.containers.run("busybox", ["sleep", "1000"], detach=True, name=f"fs-{uuid.uuid4().hex[:8]}")
    yield c
    c.remove(force=True)


def _tar(files: dict[str, bytes], uid: int = 0) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.uid = info.gid = uid
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _untar(chunks: Iterator[bytes]) -> tarfile.TarFile:
    return tarfile.open(fileobj=io.BytesIO(b"".join(chunks)))


def test_commit_with_changes_runs(dockerpy: docker.DockerClient, ctr) -> None:  # type: ignore[no-untyped-def]
    assert ctr.exec_run(["sh", "-c", "echo made > /root/f && rm /bin/vi"]).exit_code == 0
    repo = f"fs-commit-{uuid.uuid4().hex[:6]}"
    img = ctr.commit(repository=repo, tag="v1", message="a message", author="someone",
                     changes=["ENV A=b", 'CMD ["cat", "/root/f"]'])
    try:
        attrs = dockerpy.api.inspect_image(f"{repo}:v1")
        assert attrs["Id"] == img.id
        assert (attrs["Comment"], attrs["Author"]) == ("a message", "someone")
        assert attrs["Config"]["Cmd"] == ["cat", "/root/f"]
        assert "A=b" in attrs["Config"]["Env"] and any(e.startswith("PATH=") for e in attrs["Config"]["Env"])
        assert len(attrs["RootFS"]["Layers"]) == 2
        assert dockerpy.containers.run(f"{repo}:v1", remove=True) == b"made\n"
        out = dockerpy.containers.run(f"{repo}:v1", ["sh", "-c", "echo $A; ls /bin/vi || echo gone"], remove=True)
        assert out == b"b\ngone\n"
        hist = dockerpy.api.history(f"{repo}:v1")
        assert hist[0]["Comment"] == "a message" and hist[0]["CreatedBy"] == "sleep 1000"
    finally:
        dockerpy.images.remove(img.id, force=True)


def test_commit_of_unchanged_container_adds_no_layer(dockerpy: docker.DockerClient, ctr) -> None:  # type: ignore[no-untyped-def]
    img = ctr.commit()
    try:
        assert len(img.attrs["RootFS"]["Layers"]) == 1
        assert dockerpy.api.history(img.id)[0]["Size"] == 0
        assert img.tags == []
    finally:
        dockerpy.images.remove(img.id, force=True)


def test_export_is_the_flattened_root(ctr) -> None:  # type: ignore[no-untyped-def]
    ctr.exec_run(["sh", "-c", "echo x > /root/new && rm /bin/vi"])
    tf = _untar(ctr.export())
    names = set(tf.getnames())
    assert {"bin/busybox", "etc/passwd", "root/new"} <= names
    assert "bin/vi" not in names and not any(".wh." in n for n in names)
    assert tf.extractfile("root/new").read() == b"x\n"  # type: ignore[union-attr]


def test_export_of_stopped_container(dockerpy: docker.DockerClient) -> None:
    c = dockerpy.containers.run("busybox", ["sh", "-c", "echo s > /stopped"], detach=True)
    try:
        c.wait()
        tf = _untar(c.export())
        assert tf.extractfile("stopped").read() == b"s\n"  # type: ignore[union-attr]
    finally:
        c.remove(force=True)


def test_archive_get_put_and_stat(dockerpy: docker.DockerClient, ctr) -> None:  # type: ignore[no-untyped-def]
    ctr.exec_run(["sh", "-c", "mkdir -p /data/sub && echo one > /data/sub/a"])
    bits, st = ctr.get_archive("/data")
    assert st["name"] == "data" and st["mode"] & (1 << 31) and st["linkTarget"] == ""
    tf = _untar(bits)
    assert tf.getnames() == ["data", "data/sub", "data/sub/a"]
    assert tf.extractfile("data/sub/a").read() == b"one\n"  # type: ignore[union-attr]
    st = dockerpy.api.get_archive(ctr.id, "/data/sub/a")[1]
    assert (st["name"], st["size"], st["mode"]) == ("a", 4, 0o644)
    # HEAD: the stat header alone
    resp = dockerpy.api.head(dockerpy.api._url("/containers/{0}/archive", ctr.id), params={"path": "/data/sub/a"})
    assert resp.status_code == 200
    assert json.loads(base64.b64decode(resp.headers["X-Docker-Container-Path-Stat"]))["size"] == 4
    with pytest.raises(docker.errors.NotFound):
        ctr.get_archive("/no/such/file")
    assert ctr.put_archive("/data", _tar({"in/b": b"two", "top": b"t"}, uid=1234))
    assert ctr.exec_run(["cat", "/data/in/b", "/data/top"]).output == b"twot"
    assert ctr.exec_run(["stat", "-c", "%u", "/data/top"]).output == b"1234\n"
    with pytest.raises(docker.errors.NotFound):
        ctr.put_archive("/no/such/dir", _tar({"x": b"x"}))
    with pytest.raises(docker.errors.APIError) as e:
        ctr.put_archive("/data/top", _tar({"x": b"x"}))
    assert e.value.status_code == 400
    # noOverwriteDirNonDir: a directory is not replaced by a file
    resp = dockerpy.api.put(dockerpy.api._url("/containers/{0}/archive", ctr.id),
                            params={"path": "/data", "noOverwriteDirNonDir": "1"}, data=_tar({"sub": b"f"}))
    assert resp.status_code == 400
    assert ctr.exec_run(["test", "-d", "/data/sub"]).exit_code == 0


def test_archive_on_stopped_container(dockerpy: docker.DockerClient) -> None:
    c = dockerpy.containers.create("busybox", ["cat", "/root/put"])
    try:
        assert c.put_archive("/root", _tar({"put": b"into a stopped one\n"}))
        bits, st = c.get_archive("/root/put")
        assert st["size"] == 19
        c.start()
        assert c.wait()["StatusCode"] == 0
        assert c.logs() == b"into a stopped one\n"
    finally:
        c.remove(force=True)


def test_cp_through_symlinks_stays_in_the_root(dockerpy: docker.DockerClient, ctr, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Links to /etc and to ../../.. resolve inside the container, never on the host."""
    marker = f"berth-cp-{uuid.uuid4().hex[:8]}"
    host_secret = Path("/tmp") / marker
    host_secret.write_text("host secret\n")
    try:
        ctr.exec_run(["sh", "-c", f"ln -s /etc /etclink && ln -s ../../../../../../../../tmp /up "
                                  f"&& ln -s /../../../../tmp/{marker} /abs && echo in-ctr > /etc/{marker}"])
        # reading: the container's /etc through the link, nothing of the host's /tmp
        tf = _untar(ctr.get_archive(f"/etclink/{marker}")[0])
        assert tf.extractfile(marker).read() == b"in-ctr\n"  # type: ignore[union-attr]
        with pytest.raises(docker.errors.NotFound):
            ctr.get_archive(f"/up/{marker}")
        # the link itself is archived as a link, with its target inside the container
        bits, st = ctr.get_archive("/abs")
        assert st["mode"] & (1 << 27) and st["linkTarget"] == f"/tmp/{marker}"
        assert [m.issym() for m in _untar(bits).getmembers()] == [True]
        with pytest.raises(docker.errors.NotFound):
            ctr.get_archive("/abs/")
        # writing: into the container's /etc and /tmp, never the host's
        assert ctr.put_archive("/etclink", _tar({f"{marker}.w": b"w"}))
        assert ctr.put_archive("/up", _tar({f"{marker}.w": b"w"}))
        assert not Path(f"/etc/{marker}.w").exists() and not Path(f"/tmp/{marker}.w").exists()
        assert ctr.exec_run(["cat", f"/etc/{marker}.w", f"/tmp/{marker}.w"]).output == b"ww"
        # an archive's own link cannot be written through either
        with pytest.raises(docker.errors.APIError):
            ctr.put_archive("/", _tar({"up/" + marker: b"overwrite"}))
        assert host_secret.read_text() == "host secret\n"
    finally:
        host_secret.unlink()
        for p in (Path(f"/etc/{marker}.w"), Path(f"/tmp/{marker}.w")):
            if p.exists():
                p.unlink()


@pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")
def test_docker_cli_cp_commit_export(berthd: Daemon, tmp_path: Path) -> None:
    name = f"fs-cli-{uuid.uuid4().hex[:8]}"
    docker_cli(berthd, "run", "-d", "--name", name, "busybox", "sh", "-c", "ln -s /etc /l; sleep 1000")
    image = f"fs-cli-img-{uuid.uuid4().hex[:6]}"
    try:
        src = tmp_path / "in.txt"
        src.write_text("from the host\n")
        docker_cli(berthd, "cp", str(src), f"{name}:/root/")
        assert docker_cli(berthd, "exec", name, "cat", "/root/in.txt").stdout == "from the host\n"
        docker_cli(berthd, "cp", f"{name}:/l/passwd", str(tmp_path / "pw"))
        assert (tmp_path / "pw").read_text().startswith("root:x:0:0:")
        assert (tmp_path / "pw").read_text() != Path("/etc/passwd").read_text()
        docker_cli(berthd, "cp", str(src), f"{name}:/l/")
        assert not Path("/etc/in.txt").exists() or Path("/etc/in.txt").read_text() != "from the host\n"
        assert docker_cli(berthd, "exec", name, "cat", "/etc/in.txt").stdout == "from the host\n"
        diff = docker_cli(berthd, "diff", name).stdout.splitlines()
        assert "A /root/in.txt" in diff and "A /etc/in.txt" in diff
        docker_cli(berthd, "commit", "-c", "CMD cat /root/in.txt", "-m", "cli", name, image)
        assert docker_cli(berthd, "run", "--rm", image).stdout == "from the host\n"
        out = tmp_path / "exp.tar"
        docker_cli(berthd, "export", "-o", str(out), name)
        with tarfile.open(out) as tf:
            assert tf.extractfile("root/in.txt").read() == b"from the host\n"  # type: ignore[union-attr]
        os.unlink(out)
    finally:
        docker_cli(berthd, "rm", "-f", name)
        docker_cli(berthd, "rmi", "-f", image, check=False)


def test_archive_sees_volumes_of_stopped_and_running_containers(dockerpy: docker.DockerClient) -> None:
    c = dockerpy.containers.run("busybox", ["sh", "-c", "echo in-volume > /vol1/data.txt"], detach=True,
                                volumes=["/vol1"])
    try:
        c.wait()
        bits, st = c.get_archive("/vol1/data.txt")
        assert st["name"] == "data.txt" and st["size"] == 10
        assert c.put_archive("/vol1", _tar({"put.txt": b"p"}))
        c2 = dockerpy.containers.run("busybox", ["sleep", "1000"], detach=True, volumes_from=[c.id])
        try:
            assert _untar(c2.get_archive("/vol1/put.txt")[0]).extractfile("put.txt").read() == b"p"  # type: ignore[union-attr]
        finally:
            c2.remove(force=True)
    finally:
        c.remove(force=True, v=True)


def test_cp_to_a_new_name_and_head_errors(berthd: Daemon, ctr, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`docker cp FILE ctr:/new-name` first HEADs the missing path: the 404 has no body (a HEAD
    answer never has one), the connection stays usable, and the copy lands under the new name."""
    src = tmp_path / "f.txt"
    src.write_text("to a new name\n")
    docker_cli(berthd, "cp", str(src), f"{ctr.name}:/tmp/new-name.txt")
    assert ctr.exec_run(["cat", "/tmp/new-name.txt"]).output == b"to a new name\n"
    status, body = berthd.request("HEAD", f"/containers/{ctr.id}/archive?path=/nope")
    assert status == 404 and body == b""
