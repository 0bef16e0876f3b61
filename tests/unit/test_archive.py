"""Image archives: docker-archive (classic and docker 25+), OCI layouts, write_archive, and the
real tools (skopeo, dockerd) as oracles where they are installed."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from berth.common.errors import BerthError, InvalidParameter
from berth.images.archive import (
    ArchiveImage,
    SaveImage,
    SaveLayer,
    _host_platform,
    open_archive,
    write_archive,
)
from berth.snapshots.tarapply import AppliedLayer, apply_layer

DOCKER_HOST = "unix:///var/run/docker.sock"

# --- building blocks -----------------------------------------------------------------------------


def layer_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def config_for(layers: list[bytes], arch: str = "amd64", extra: str = "") -> bytes:
    return json.dumps({
        "architecture": arch, "os": "linux", "config": {"Env": [extra]},
        "rootfs": {"type": "layers", "diff_ids": [sha(x) for x in layers]},
    }).encode()


def archive_tar(members: dict[str, bytes | tuple[bytes, str]]) -> bytes:
    """A tar of files; a (type, target) tuple makes a symlink (b"2") or hardlink (b"1")."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(data, tuple):
                info.type, info.linkname = data
                tf.addfile(info)
            else:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write(tmp_path: Path, data: bytes, name: str = "a.tar") -> str:
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


L1 = layer_tar({"bin/sh": b"shell", "etc/os-release": b"berth"})
L2 = layer_tar({"app": b"application"})
L3 = layer_tar({"other": b"o" * 5000})


def classic_archive() -> tuple[bytes, bytes, bytes]:
    """docker <= 24 `save` of two images sharing the bottom layer; the second copy of the shared
    layer is a symlink, as docker writes it."""
    c1, c2 = config_for([L1, L2]), config_for([L1, L3], extra="2")
    h1, h2 = hashlib.sha256(c1).hexdigest(), hashlib.sha256(c2).hexdigest()
    ids = ["a" * 64, "b" * 64, "c" * 64, "d" * 64]
    manifest = [
        {"Config": f"{h1}.json", "RepoTags": ["busybox:latest", "example.com/x/y:1"],
         "Layers": [f"{ids[0]}/layer.tar", f"{ids[1]}/layer.tar"]},
        {"Config": f"{h2}.json", "RepoTags": None,
         "Layers": [f"./{ids[2]}/layer.tar", f"{ids[3]}/layer.tar"]},
    ]
    data = archive_tar({
        f"{ids[0]}/layer.tar": L1, f"{ids[0]}/VERSION": b"1.0", f"{ids[0]}/json": b"{}",
        f"{ids[1]}/layer.tar": L2,
        f"{ids[2]}/layer.tar": (tarfile.SYMTYPE, f"../{ids[0]}/layer.tar"),
        f"{ids[3]}/layer.tar": L3,
        f"{h1}.json": c1, f"{h2}.json": c2,
        "manifest.json": json.dumps(manifest).encode(),
        "repositories": b"{}",
    })
    return data, c1, c2


def read_member(archive_path: str, image: ArchiveImage, i: int) -> bytes:
    with open_archive(archive_path) as a, a.open_member(image.layers[i]) as f:
        return f.read()


# --- reading -------------------------------------------------------------------------------------


def test_classic_docker_archive(tmp_path: Path) -> None:
    data, c1, c2 = classic_archive()
    path = write(tmp_path, data)
    with open_archive(path) as a:
        assert [i.config for i in a.images] == [c1, c2]
        one, two = a.images
        assert one.id == sha(c1)
        assert one.repo_tags == ["busybox:latest", "example.com/x/y:1"]
        assert two.repo_tags == []
        assert one.layers == ["a" * 64 + "/layer.tar", "b" * 64 + "/layer.tar"]
        with a.open_member(two.layers[0]) as f:  # through the symlink
            assert f.read() == L1
        with a.open_member(one.layers[1]) as f:
            assert f.read() == L2


def test_hardlinked_member(tmp_path: Path) -> None:
    c = config_for([L1])
    data = archive_tar({
        "x/layer.tar": L1, "y/layer.tar": (tarfile.LNKTYPE, "x/layer.tar"), "c.json": c,
        "manifest.json": json.dumps([{"Config": "c.json", "RepoTags": [], "Layers": ["y/layer.tar"]}]).encode(),
    })
    path = write(tmp_path, data)
    with open_archive(path) as a, a.open_member(a.images[0].layers[0]) as f:
        assert f.read() == L1


def test_whole_archive_compressed(tmp_path: Path) -> None:
    data, c1, _ = classic_archive()
    path = write(tmp_path, gzip.compress(data), "a.tar.gz")
    with open_archive(path) as a:
        assert a.images[0].config == c1
        with a.open_member(a.images[0].layers[0]) as f:
            assert f.read() == L1
    assert os.listdir(tmp_path) == ["a.tar.gz"]  # the spooled copy is gone


def _blob(blobs: dict[str, bytes], doc: object) -> dict[str, object]:
    raw = json.dumps(doc).encode() if not isinstance(doc, bytes) else doc
    blobs[hashlib.sha256(raw).hexdigest()] = raw
    return {"digest": sha(raw), "size": len(raw)}


def oci_layout(index_descs_fn: object = None, arch: str | None = None) -> tuple[bytes, bytes, dict[str, bytes]]:
    """An OCI layout as skopeo/buildkit write it: index.json -> image index (per platform and an
    attestation) -> manifests. Returns (tar, host config, blobs)."""
    host_arch = arch or _host_platform()[0]
    blobs: dict[str, bytes] = {}
    gz1 = gzip.compress(L1, mtime=0)
    lay = dict(_blob(blobs, gz1), mediaType="application/vnd.oci.image.layer.v1.tar+gzip")
    manifests = []
    configs = {}
    for a in ("s390x-not-us", host_arch):
        cfg = config_for([L1], arch=a)
        configs[a] = cfg
        m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
             "config": dict(_blob(blobs, cfg), mediaType="application/vnd.oci.image.config.v1+json"),
             "layers": [lay]}
        manifests.append(dict(_blob(blobs, m), mediaType="application/vnd.oci.image.manifest.v1+json",
                              platform={"os": "linux", "architecture": a}))
    att = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
           "config": dict(_blob(blobs, b"{}"), mediaType="application/vnd.in-toto+json"), "layers": []}
    manifests.append(dict(_blob(blobs, att), mediaType="application/vnd.oci.image.manifest.v1+json",
                          platform={"os": "unknown", "architecture": "unknown"},
                          annotations={"vnd.docker.reference.type": "attestation-manifest"}))
    idx = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}
    top = dict(_blob(blobs, idx), mediaType="application/vnd.oci.image.index.v1+json",
               annotations={"io.containerd.image.name": "docker.io/library/multi:1.0",
                            "org.opencontainers.image.ref.name": "1.0"})
    files: dict[str, bytes | tuple[bytes, str]] = {
        "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
        "index.json": json.dumps({"schemaVersion": 2, "manifests": [top]}).encode(),
    }
    files.update({f"blobs/sha256/{h}": b for h, b in blobs.items()})
    return archive_tar(files), configs[host_arch], blobs


def test_oci_layout_picks_host_platform_through_nested_index(tmp_path: Path) -> None:
    data, host_config, _ = oci_layout()
    with open_archive(write(tmp_path, data)) as a:
        assert len(a.images) == 1
        img = a.images[0]
        assert img.config == host_config
        assert img.repo_tags == ["multi:1.0"]
        with a.open_member(img.layers[0]) as f:  # still compressed: apply_layer undoes it
            assert gzip.decompress(f.read()) == L1


def test_oci_layout_without_a_host_image(tmp_path: Path) -> None:
    data, _, _ = oci_layout(arch="mips-nowhere")
    # the host's manifest is absent, only s390x-not-us and mips-nowhere exist
    if _host_platform()[0] in ("mips-nowhere", "s390x-not-us"):
        pytest.skip("unusual host")
    with pytest.raises(InvalidParameter, match="no image for linux/"):
        open_archive(write(tmp_path, data))


def single_oci(annotations: dict[str, str] | None) -> bytes:
    blobs: dict[str, bytes] = {}
    cfg = config_for([L1])
    m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
         "config": dict(_blob(blobs, cfg), mediaType="application/vnd.oci.image.config.v1+json"),
         "layers": [dict(_blob(blobs, L1), mediaType="application/vnd.oci.image.layer.v1.tar")]}
    desc = dict(_blob(blobs, m), mediaType="application/vnd.oci.image.manifest.v1+json")
    if annotations:
        desc["annotations"] = annotations
    files: dict[str, bytes | tuple[bytes, str]] = {
        "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
        "index.json": json.dumps({"schemaVersion": 2, "manifests": [desc]}).encode(),
    }
    files.update({f"blobs/sha256/{h}": b for h, b in blobs.items()})
    return archive_tar(files)


@pytest.mark.parametrize("annotations, tags", [
    (None, []),
    ({"org.opencontainers.image.ref.name": "latest"}, []),  # a bare tag names no repository
    ({"org.opencontainers.image.ref.name": "busybox:1.36"}, ["busybox:1.36"]),
    ({"org.opencontainers.image.ref.name": "quay.io/a/b:2"}, ["quay.io/a/b:2"]),
    ({"io.containerd.image.name": "docker.io/library/alpine:3", "org.opencontainers.image.ref.name": "3"},
     ["alpine:3"]),
    ({"io.containerd.image.name": "localhost:5000/x"}, ["localhost:5000/x:latest"]),
])
def test_oci_names_from_annotations(tmp_path: Path, annotations: dict[str, str] | None,
                                    tags: list[str]) -> None:
    with open_archive(write(tmp_path, single_oci(annotations))) as a:
        assert a.images[0].repo_tags == tags


# --- validation ----------------------------------------------------------------------------------


def _docker_manifest(config: str, layers: list[str]) -> bytes:
    return json.dumps([{"Config": config, "RepoTags": ["x:1"], "Layers": layers}]).encode()


BROKEN: dict[str, tuple[dict[str, bytes | tuple[bytes, str]], str]] = {
    "missing layer": ({"c.json": config_for([L1]), "manifest.json": _docker_manifest("c.json", ["l.tar"])},
                      "'l.tar' is missing"),
    "layer path escapes": ({"c.json": config_for([L1]),
                            "manifest.json": _docker_manifest("c.json", ["../../etc/passwd"])},
                           "outside the archive"),
    "absolute config": ({"manifest.json": _docker_manifest("/etc/passwd", [])}, "absolute"),
    "symlink escapes": ({"c.json": config_for([L1]), "l.tar": (tarfile.SYMTYPE, "../../etc/shadow"),
                         "manifest.json": _docker_manifest("c.json", ["l.tar"])}, "outside the archive"),
    "absolute symlink": ({"c.json": config_for([L1]), "l.tar": (tarfile.SYMTYPE, "/etc/shadow"),
                          "manifest.json": _docker_manifest("c.json", ["l.tar"])}, "outside the archive"),
    "symlink loop": ({"c.json": config_for([L1]), "l.tar": (tarfile.SYMTYPE, "l.tar"),
                      "manifest.json": _docker_manifest("c.json", ["l.tar"])}, "too many levels"),
    "layer count": ({"c.json": config_for([L1, L2]), "l.tar": L1,
                     "manifest.json": _docker_manifest("c.json", ["l.tar"])}, "2 layers"),
    "config not json": ({"c.json": b"{nope", "manifest.json": _docker_manifest("c.json", [])}, "not valid JSON"),
    "config without rootfs": ({"c.json": b'{"os":"linux"}', "manifest.json": _docker_manifest("c.json", [])},
                              "rootfs.diff_ids"),
    "manifest not a list": ({"manifest.json": b'{"Config":"x"}'}, "not a list"),
    "manifest entry without config": ({"manifest.json": b'[{"Layers":[]}]'}, "no Config"),
    "nothing recognisable": ({"hello": b"world"}, "neither manifest.json"),
    "index without manifests": ({"oci-layout": b"{}", "index.json": b'{"schemaVersion":2}'}, "manifests"),
    "bad digest": ({"oci-layout": b"{}", "index.json": json.dumps(
        {"manifests": [{"digest": "sha256:../../x", "mediaType": "application/vnd.oci.image.manifest.v1+json"}]}
    ).encode()}, "digest"),
}


@pytest.mark.parametrize("case", list(BROKEN), ids=list(BROKEN))
def test_broken_archives(tmp_path: Path, case: str) -> None:
    members, message = BROKEN[case]
    with pytest.raises(InvalidParameter, match=message):
        open_archive(write(tmp_path, archive_tar(members)))


def test_oci_blob_must_match_its_digest(tmp_path: Path) -> None:
    data, _, blobs = oci_layout()
    path = tmp_path / "x"
    path.mkdir()
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        tf.extractall(path)  # our own test data; Debian 12's Python 3.11.2 has no `filter=`
    victim = next(h for h, b in blobs.items() if b.startswith(b'{"schemaVersion": 2, "mediaType": '
                                                                b'"application/vnd.oci.image.index'))
    (path / "blobs/sha256" / victim).write_bytes(blobs[victim].replace(b"s390x-not-us", b"s390x-not-me"))
    out = tmp_path / "y.tar"
    with tarfile.open(out, "w") as tf:
        for name in sorted(os.listdir(path)):
            tf.add(path / name, arcname=name)
    with pytest.raises(InvalidParameter, match="does not match its digest"):
        open_archive(str(out))


def test_not_a_tar(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameter):
        open_archive(write(tmp_path, b"\x00garbage" * 1000))


# --- writing -------------------------------------------------------------------------------------


def save_layer(data: bytes) -> SaveLayer:
    return SaveLayer(diff_id=sha(data), size=len(data), open=lambda: io.BytesIO(data))


def two_images() -> list[SaveImage]:
    return [
        SaveImage(config=config_for([L1, L2]), repo_tags=["busybox:latest", "busybox:1.36"],
                  layers=[save_layer(L1), save_layer(L2)]),
        SaveImage(config=config_for([L1, L3]), repo_tags=["quay.io/org/app:v2"],
                  layers=[save_layer(L1), save_layer(L3)]),
        SaveImage(config=config_for([L3], extra="untagged"), repo_tags=[], layers=[save_layer(L3)]),
    ]


class Pipe(io.RawIOBase):
    """Write-only, no seek or tell, partial writes: like a socket."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: bytes | memoryview) -> int:  # type: ignore[override]
        n = min(len(b), 4000)
        self.data += b[:n]
        return n


def saved(tmp_path: Path, images: list[SaveImage], name: str = "saved.tar") -> str:
    pipe = Pipe()
    write_archive(pipe, images)  # type: ignore[arg-type]
    return write(tmp_path, bytes(pipe.data), name)


def test_write_archive_layout(tmp_path: Path) -> None:
    path = saved(tmp_path, two_images())
    with tarfile.open(path) as tf:
        members = tf.getmembers()
        names = [m.name for m in members]
        blobs = [n for n in names if n.startswith("blobs/sha256/") and n != "blobs/sha256"]
        assert names[:2] == ["blobs", "blobs/sha256"]
        assert blobs == sorted(blobs)
        assert names[-4:] == ["index.json", "manifest.json", "oci-layout", "repositories"]
        for layer in (L1, L2, L3):
            assert names.count("blobs/sha256/" + hashlib.sha256(layer).hexdigest()) == 1
        assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in members)
        index = json.load(tf.extractfile("index.json"))  # type: ignore[arg-type]
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
        repos = json.load(tf.extractfile("repositories"))  # type: ignore[arg-type]
        assert json.load(tf.extractfile("oci-layout")) == {"imageLayoutVersion": "1.0.0"}  # type: ignore[arg-type]
    annotations = [d.get("annotations") for d in index["manifests"]]
    assert annotations == [
        {"io.containerd.image.name": "docker.io/library/busybox:latest", "org.opencontainers.image.ref.name": "latest"},
        {"io.containerd.image.name": "docker.io/library/busybox:1.36", "org.opencontainers.image.ref.name": "1.36"},
        {"io.containerd.image.name": "quay.io/org/app:v2", "org.opencontainers.image.ref.name": "v2"},
        None,
    ]
    assert manifest[0]["RepoTags"] == ["busybox:latest", "busybox:1.36"]
    assert manifest[0]["Layers"] == ["blobs/sha256/" + hashlib.sha256(x).hexdigest() for x in (L1, L2)]
    assert set(repos) == {"busybox", "quay.io/org/app"}


def test_write_archive_is_deterministic(tmp_path: Path) -> None:
    a, b = io.BytesIO(), io.BytesIO()
    write_archive(a, two_images())
    write_archive(b, two_images())
    assert a.getvalue() == b.getvalue()


def test_write_then_open_docker_and_oci_paths(tmp_path: Path) -> None:
    images = two_images()
    path = saved(tmp_path, images)
    expect_ids = [sha(i.config) for i in images]
    with open_archive(path) as a:  # manifest.json path
        assert [i.id for i in a.images] == expect_ids
        assert [i.repo_tags for i in a.images] == [["busybox:latest", "busybox:1.36"], ["quay.io/org/app:v2"], []]
    with open_archive(path) as a:
        for loaded in a.images:
            for name in loaded.layers:
                with a.open_member(name) as f:
                    assert sha(f.read()) == "sha256:" + name.rsplit("/", 1)[1]

    # the same archive without docker's manifest.json is read as an OCI layout, with the same result
    oci_only = tmp_path / "oci.tar"
    with tarfile.open(path) as src, tarfile.open(oci_only, "w") as dst:
        for m in src.getmembers():
            if m.name not in ("manifest.json", "repositories"):
                dst.addfile(m, src.extractfile(m) if m.isreg() else None)
    with open_archive(str(oci_only)) as a:
        assert [i.id for i in a.images] == expect_ids
        assert [i.repo_tags for i in a.images] == [["busybox:latest", "busybox:1.36"], ["quay.io/org/app:v2"], []]


def test_write_archive_checks_layer_content(tmp_path: Path) -> None:
    bad = SaveLayer(diff_id=sha(L1), size=len(L2), open=lambda: io.BytesIO(L2))
    with pytest.raises(BerthError, match="does not match"):
        write_archive(io.BytesIO(), [SaveImage(config=config_for([L1]), repo_tags=[], layers=[bad])])
    short = SaveLayer(diff_id=sha(L1), size=len(L1) + 10, open=lambda: io.BytesIO(L1))
    with pytest.raises(BerthError, match="early"):
        write_archive(io.BytesIO(), [SaveImage(config=config_for([L1]), repo_tags=[], layers=[short])])


def test_write_archive_refuses_bad_tags() -> None:
    with pytest.raises(InvalidParameter):
        write_archive(io.BytesIO(), [SaveImage(config=config_for([]), repo_tags=["UPPER:case"], layers=[])])


# --- oracles -------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_skopeo_reads_written_archive(tmp_path: Path) -> None:
    cfg = config_for([L1, L2])
    image = SaveImage(config=cfg, repo_tags=["busybox:latest"], layers=[save_layer(L1), save_layer(L2)])
    path = saved(tmp_path, [image])
    for transport in (f"docker-archive:{path}", f"oci-archive:{path}", f"oci-archive:{path}:latest"):
        raw = subprocess.run(["skopeo", "inspect", "--raw", transport], capture_output=True, timeout=60)
        assert raw.returncode == 0, (transport, raw.stderr)
        out = subprocess.run(["skopeo", "inspect", "--config", transport], capture_output=True, timeout=60)
        assert out.returncode == 0, (transport, out.stderr)
        assert json.loads(out.stdout)["rootfs"]["diff_ids"] == [sha(L1), sha(L2)]
    # several images: skopeo picks one by name
    multi = saved(tmp_path, two_images(), "multi.tar")
    out = subprocess.run(["skopeo", "inspect", "--config", f"docker-archive:{multi}:quay.io/org/app:v2"],
                         capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["rootfs"]["diff_ids"] == [sha(L1), sha(L3)]


def _docker(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["docker", "-H", DOCKER_HOST, *args], capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def busybox_save(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    if shutil.which("docker") is None or not os.path.exists(DOCKER_HOST[len("unix://"):]):
        pytest.skip("no docker CLI or dockerd")
    inspect = _docker("image", "inspect", "--format", "{{.Id}}", "busybox:latest")
    if inspect.returncode != 0:
        pytest.skip(f"dockerd unreachable or no busybox:latest: {inspect.stderr.decode()[:200]}")
    path = tmp_path_factory.mktemp("docker") / "busybox.tar"
    out = _docker("save", "-o", str(path), "busybox:latest")
    if out.returncode != 0:
        pytest.skip(f"docker save failed: {out.stderr.decode()[:200]}")
    return str(path), inspect.stdout.decode().strip()


def test_docker_save_output(tmp_path: Path, busybox_save: tuple[str, str]) -> None:
    path, image_id = busybox_save
    with open_archive(path) as a:
        assert len(a.images) == 1
        img = a.images[0]
        assert img.id == image_id
        assert "busybox:latest" in img.repo_tags
        diff_ids = json.loads(img.config)["rootfs"]["diff_ids"]
        dest = tmp_path / "rootfs"
        layers: list[AppliedLayer] = []
        for name, diff_id in zip(img.layers, diff_ids, strict=True):
            with a.open_member(name) as f:
                applied = apply_layer(f, str(dest))
            assert applied.diff_id == diff_id
            layers.append(applied)
        assert os.path.lexists(dest / "bin/sh")

        # and saving it again gives an archive docker-archive readers take, with the same image ID
        def again_layer(name: str, applied: AppliedLayer, diff_id: str) -> SaveLayer:
            # docker save stores layers uncompressed: the member is the tar apply_layer read
            return SaveLayer(diff_id=diff_id, size=applied.tar_size, open=lambda: a.open_member(name))
        again = saved(tmp_path, [SaveImage(config=img.config, repo_tags=img.repo_tags, layers=[
            again_layer(n, x, d) for n, x, d in zip(img.layers, layers, diff_ids, strict=True)])])
    with open_archive(again) as b:
        assert b.images[0].id == image_id and b.images[0].repo_tags == img.repo_tags
