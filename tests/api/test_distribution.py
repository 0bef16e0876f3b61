"""Pull, push and login in berthd, through real clients (docker CLI, docker-py) against a real
registry: `berth registry serve` (open and behind htpasswd), and Debian's distribution 2.8."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ..conftest import Daemon, docker_cli
from . import test_registry_server
from .test_docker_cli import docker
from .test_registry_server import Registry, _free_port

make_registry = test_registry_server.make_registry  # the registry server tests' fixture, shared

DOCKER = docker_cli()
needs_docker = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")
DISTRIBUTION = shutil.which("docker-registry") or (
    "/usr/bin/docker-registry" if os.path.exists("/usr/bin/docker-registry") else None)


@pytest.fixture
def registry(make_registry: Callable[..., Registry]) -> Registry:
    return make_registry()


@pytest.fixture
def auth_registry(make_registry: Callable[..., Registry], tmp_path: Path) -> Registry:
    import bcrypt

    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(5)).decode().replace("$2b$", "$2y$", 1)
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"alice:{hashed}\n")
    return make_registry("--htpasswd", str(htpasswd), auth=("alice", "s3cret"))


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The docker CLI (and berth's) keeps logins here, not in the user's ~/.docker."""
    cfg = tmp_path / "docker-config"
    cfg.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(cfg))
    return cfg


def make_image(d: Daemon, ref: str, nbytes: int = 1 << 20, layers: int = 1) -> str:
    """An image of random bytes (`import`, then `commit`-free extra layers are not needed)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for i in range(layers):
            data = os.urandom(nbytes)
            info = tarfile.TarInfo(f"data{i}.bin")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    repo, _, tag = ref.rpartition(":")
    status, out = d.request("POST", f"/images/create?fromSrc=-&repo={repo}&tag={tag}", buf.getvalue(),
                            {"Content-Type": "application/x-tar"})
    assert status == 200, out
    return json.loads(out.splitlines()[-1])["status"]


def messages(raw: bytes) -> list[dict]:
    return [json.loads(line) for line in raw.splitlines() if line.strip()]


def registry_auth(user: str, password: str, server: str) -> str:
    raw = json.dumps({"username": user, "password": password, "serveraddress": server}).encode()
    return base64.urlsafe_b64encode(raw).decode()


# --- the docker CLI ------------------------------------------------------------------------------

@needs_docker
def test_docker_cli_login_push_rmi_pull_keeps_id(berthd: Daemon, auth_registry: Registry,
                                                  docker_config: Path) -> None:
    reg = auth_registry.host
    ref = f"{reg}/t/rand:1"
    image_id = make_image(berthd, ref, 2 << 20)
    out = docker(berthd, "login", "-u", "alice", "--password-stdin", reg, input=b"s3cret\n")
    assert "Login Succeeded" in out.stdout
    saved = json.loads((docker_config / "config.json").read_text())
    assert base64.b64decode(saved["auths"][reg]["auth"]) == b"alice:s3cret"

    pushed = docker(berthd, "push", ref, timeout=120)
    assert f"The push refers to repository [{reg}/t/rand]" in pushed.stdout
    assert "Pushed" in pushed.stdout and "1: digest: sha256:" in pushed.stdout, pushed.stdout
    digest = pushed.stdout.split("digest: ")[1].split()[0]
    inspect = json.loads(docker(berthd, "inspect", ref).stdout)[0]
    assert f"{reg}/t/rand@{digest}" in inspect["RepoDigests"]

    again = docker(berthd, "push", ref)
    assert "Layer already exists" in again.stdout and "Pushed" not in again.stdout, again.stdout
    assert f"1: digest: {digest}" in again.stdout

    docker(berthd, "rmi", ref)
    assert docker(berthd, "images", "-q", ref).stdout.strip() == ""
    pulled = docker(berthd, "pull", ref, timeout=120)
    assert "Pull complete" in pulled.stdout and f"Digest: {digest}" in pulled.stdout, pulled.stdout
    assert f"Status: Downloaded newer image for {ref}" in pulled.stdout
    assert docker(berthd, "inspect", "-f", "{{.Id}}", ref).stdout.strip() == image_id
    assert docker(berthd, "run", "--rm", ref, "true", check=False).returncode in (0, 127)
    same = docker(berthd, "pull", ref)
    assert f"Status: Image is up to date for {ref}" in same.stdout
    by_digest = docker(berthd, "pull", f"{reg}/t/rand@{digest}")
    assert by_digest.returncode == 0, by_digest.stderr

    docker(berthd, "logout", reg)
    assert reg not in json.loads((docker_config / "config.json").read_text()).get("auths", {})
    denied = docker(berthd, "pull", f"{reg}/t/rand:1", check=False)
    assert denied.returncode != 0 and "no basic auth credentials" in denied.stderr, denied.stderr
    docker(berthd, "rmi", ref)


@needs_docker
def test_docker_cli_wrong_password_is_unauthorized(berthd: Daemon, auth_registry: Registry,
                                                   docker_config: Path) -> None:
    out = docker(berthd, "login", "-u", "alice", "--password-stdin", auth_registry.host, input=b"nope\n",
                 check=False)
    assert out.returncode != 0
    assert "unauthorized" in out.stderr.lower(), out.stderr
    assert not (docker_config / "config.json").exists() or auth_registry.host not in (
        docker_config / "config.json").read_text()


@needs_docker
def test_docker_cli_pull_unknown_tag(berthd: Daemon, registry: Registry, docker_config: Path) -> None:
    make_image(berthd, f"{registry.host}/t/known:1", 1024)
    docker(berthd, "push", f"{registry.host}/t/known:1")
    out = docker(berthd, "pull", f"{registry.host}/t/known:nope", check=False)
    assert out.returncode == 1
    assert f"manifest for {registry.host}/t/known:nope not found: manifest unknown" in out.stderr, out.stderr
    docker(berthd, "rmi", f"{registry.host}/t/known:1")


@needs_docker
def test_push_mounts_from_another_repository(berthd: Daemon, registry: Registry, docker_config: Path) -> None:
    a, b = f"{registry.host}/t/a:1", f"{registry.host}/t/b:1"
    make_image(berthd, a, 1 << 20)
    docker(berthd, "push", a)
    docker(berthd, "tag", a, b)
    out = docker(berthd, "push", b)
    assert "Mounted from t/a" in out.stdout, out.stdout
    docker(berthd, "rmi", a, b)


# --- docker-py and the raw API ------------------------------------------------------------------

def test_dockerpy_push_and_pull(berthd: Daemon, dockerpy, registry: Registry) -> None:  # type: ignore[no-untyped-def]
    repo = f"{registry.host}/py/rand"
    image_id = make_image(berthd, f"{repo}:v1", 3 << 20, layers=1)
    lines = list(dockerpy.images.push(repo, tag="v1", stream=True, decode=True))
    aux = [m["aux"] for m in lines if "aux" in m]
    assert aux and aux[0]["Tag"] == "v1" and aux[0]["Digest"].startswith("sha256:"), lines
    assert any(m.get("status") == "Pushing" and m.get("progressDetail", {}).get("total") for m in lines)
    dockerpy.images.remove(f"{repo}:v1")
    img = dockerpy.images.pull(repo, tag="v1")
    assert img.id == image_id
    assert f"{repo}@{aux[0]['Digest']}" in img.attrs["RepoDigests"]
    # by digest: same image, no new tag
    img2 = dockerpy.images.pull(f"{repo}@{aux[0]['Digest']}")
    assert img2.id == image_id
    dockerpy.images.remove(f"{repo}:v1")


def test_pull_progress_stream_and_wrong_password(berthd: Daemon, auth_registry: Registry) -> None:
    repo = f"{auth_registry.host}/p/img"
    make_image(berthd, f"{repo}:x", 1 << 20)
    good = {"X-Registry-Auth": registry_auth("alice", "s3cret", auth_registry.host)}
    status, out = berthd.request("POST", f"/images/{repo}/push?tag=x", headers=good)
    assert status == 200 and b'"aux"' in out, out
    berthd.request("DELETE", f"/images/{repo}:x")
    status, out = berthd.request("POST", f"/images/create?fromImage={repo}&tag=x", headers=good)
    assert status == 200, out
    msgs = messages(out)
    statuses = [m.get("status", "") for m in msgs]
    assert statuses[0] == "Pulling from p/img" and msgs[0]["id"] == "x"
    for s in ("Pulling fs layer", "Downloading", "Download complete", "Pull complete"):
        assert s in statuses, statuses
    assert statuses[-2].startswith("Digest: sha256:")
    assert statuses[-1] == f"Status: Downloaded newer image for {repo}:x"
    bad = {"X-Registry-Auth": registry_auth("alice", "wrong", auth_registry.host)}
    status, out = berthd.request("POST", f"/images/create?fromImage={repo}&tag=x", headers=bad)
    assert status in (401, 404) and b"unauthorized" in out.lower(), (status, out)
    status, out = berthd.request("POST", "/auth", {"username": "alice", "password": "wrong",
                                                   "serveraddress": auth_registry.host})
    assert status == 401 and b"401 Unauthorized" in out, out
    status, out = berthd.request("POST", "/auth", {"username": "alice", "password": "s3cret",
                                                   "serveraddress": auth_registry.host})
    assert status == 200 and json.loads(out)["Status"] == "Login Succeeded"
    berthd.request("DELETE", f"/images/{repo}:x")


def test_pull_refuses_corrupt_blob(berthd: Daemon, registry: Registry) -> None:
    """A layer whose bytes do not match its digest is refused and nothing is left behind."""
    repo = f"{registry.host}/c/img"
    make_image(berthd, f"{repo}:1", 1 << 16)
    status, out = berthd.request("POST", f"/images/{repo}/push?tag=1")
    assert status == 200, out
    berthd.request("DELETE", f"/images/{repo}:1")
    manifest = json.loads(registry.request("GET", "/v2/c/img/manifests/1", headers={
        "Accept": "application/vnd.docker.distribution.manifest.v2+json"}).body)
    layer = manifest["layers"][0]["digest"]
    blob_path = Path(registry.root).rglob(layer.split(":")[1])
    paths = [p for p in blob_path if p.is_file()]
    assert paths, "layer blob not found in the registry root"
    for p in paths:
        p.write_bytes(b"\x1f\x8b" + os.urandom(200))
    status, out = berthd.request("POST", f"/images/create?fromImage={repo}&tag=1")
    assert b"error" in out.lower() or status >= 400, out
    status, _ = berthd.request("GET", f"/images/{repo}:1/json")
    assert status == 404


# --- Debian's distribution 2.8 ------------------------------------------------------------------

def start_distribution(tmp_path: Path, auth: str = "") -> Iterator[str]:
    """Debian's docker-registry on a free loopback port with a temp config; `auth` is a YAML `auth:` block."""
    if DISTRIBUTION is None:
        pytest.skip("docker-registry (distribution) is not installed")
    port = _free_port()
    cfg = tmp_path / "config.yml"
    cfg.write_text(f"""version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: {tmp_path / 'storage'}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
{auth}""")
    proc = subprocess.Popen([DISTRIBUTION, "serve", str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=open(tmp_path / "registry.log", "wb"))
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError((tmp_path / "registry.log").read_text()) from None
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def distribution_registry(tmp_path: Path) -> Iterator[str]:
    yield from start_distribution(tmp_path)


@pytest.fixture
def distribution_htpasswd(tmp_path: Path) -> Iterator[str]:
    import bcrypt

    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(5)).decode().replace("$2b$", "$2y$", 1)
    (tmp_path / "htpasswd").write_text(f"alice:{hashed}\n")
    yield from start_distribution(tmp_path, f"""auth:
  htpasswd:
    realm: test-realm
    path: {tmp_path / 'htpasswd'}
""")


def test_push_pull_with_distribution(berthd: Daemon, distribution_registry: str) -> None:
    repo = f"{distribution_registry}/dist/rand"
    image_id = make_image(berthd, f"{repo}:1", 2 << 20)
    status, out = berthd.request("POST", f"/images/{repo}/push?tag=1", timeout=120)
    assert status == 200 and b'"aux"' in out and b"error" not in out, out
    status, out = berthd.request("POST", f"/images/{repo}/push?tag=1")
    assert b"Layer already exists" in out, out
    berthd.request("DELETE", f"/images/{repo}:1")
    status, out = berthd.request("POST", f"/images/create?fromImage={repo}&tag=1", timeout=120)
    assert status == 200 and b"Downloaded newer image" in out, out
    info = berthd.json("GET", f"/images/{repo}:1/json")
    assert isinstance(info, dict) and info["Id"] == image_id
    berthd.request("DELETE", f"/images/{repo}:1")


@needs_docker
def test_docker_cli_with_distribution_behind_htpasswd(berthd: Daemon, distribution_htpasswd: str,
                                                      docker_config: Path) -> None:
    """distribution's own Basic challenge: wrong password refused, login, push, rmi, pull, same ID."""
    reg = distribution_htpasswd
    ref = f"{reg}/dist/private:1"
    image_id = make_image(berthd, ref, 1 << 20, layers=2)
    bad = docker(berthd, "login", "-u", "alice", "--password-stdin", reg, input=b"nope\n", check=False)
    assert bad.returncode != 0 and "unauthorized" in bad.stderr.lower(), bad.stderr
    anon = docker(berthd, "push", ref, check=False)
    assert anon.returncode != 0 and "no basic auth credentials" in anon.stderr, anon.stderr
    docker(berthd, "login", "-u", "alice", "--password-stdin", reg, input=b"s3cret\n")
    pushed = docker(berthd, "push", ref, timeout=120)
    assert "Pushed" in pushed.stdout and "1: digest: sha256:" in pushed.stdout, pushed.stdout
    docker(berthd, "rmi", ref)
    pulled = docker(berthd, "pull", ref, timeout=120)
    assert "Pull complete" in pulled.stdout, pulled.stdout
    assert docker(berthd, "inspect", "-f", "{{.Id}}", ref).stdout.strip() == image_id
    docker(berthd, "rmi", ref)


def test_pull_name_unknown_says_access_denied(berthd: Daemon, registry: Registry) -> None:
    status, out = berthd.request("POST", f"/images/create?fromImage={registry.host}/no/such&tag=1")
    assert status == 404, out
    msg = json.loads(out)["message"]
    assert "manifest unknown" in msg or "does not exist" in msg, msg


# --- the berth CLI ------------------------------------------------------------------------------

def berth(d: Daemon, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    import sys

    p = subprocess.run([sys.executable, "-m", "berth.cli.main", "-H", d.host, *args], input=input,
                       capture_output=True, timeout=120)
    return subprocess.CompletedProcess(p.args, p.returncode, p.stdout.decode(), p.stderr.decode())


def test_berth_cli_login_push_pull_logout(berthd: Daemon, auth_registry: Registry, docker_config: Path) -> None:
    reg = auth_registry.host
    ref = f"{reg}/b/cli:2"
    image_id = make_image(berthd, ref, 1 << 20)
    bad = berth(berthd, "login", "-u", "alice", "--password-stdin", reg, input=b"wrong\n")
    assert bad.returncode == 1 and "401 Unauthorized" in bad.stderr, bad
    ok = berth(berthd, "login", "-u", "alice", "--password-stdin", reg, input=b"s3cret\n")
    assert ok.returncode == 0 and "Login Succeeded" in ok.stdout, ok
    saved = json.loads((docker_config / "config.json").read_text())
    assert base64.b64decode(saved["auths"][reg]["auth"]) == b"alice:s3cret"
    pushed = berth(berthd, "push", ref)
    assert pushed.returncode == 0 and "Pushed" in pushed.stdout and "2: digest: sha256:" in pushed.stdout, pushed
    assert berth(berthd, "rmi", ref).returncode == 0
    pulled = berth(berthd, "pull", ref)
    assert pulled.returncode == 0 and "Pull complete" in pulled.stdout, pulled
    assert pulled.stdout.rstrip().endswith(ref)
    assert berth(berthd, "inspect", "-f", "{{.Id}}", ref).stdout.strip() == image_id
    out = berth(berthd, "logout", reg)
    assert out.stdout.strip() == f"Removing login credentials for {reg}"
    denied = berth(berthd, "pull", ref)
    assert denied.returncode == 1 and "no basic auth credentials" in denied.stderr, denied
    berth(berthd, "rmi", ref)


def test_pull_index_selects_platform(berthd: Daemon, registry: Registry) -> None:
    import platform as _platform

    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(_platform.machine(), _platform.machine())
    repo = f"{registry.host}/multi/img"
    ids, digests = {}, {}
    for name in ("host", "other"):
        ids[name] = make_image(berthd, f"{repo}:{name}", 1 << 14)
        status, out = berthd.request("POST", f"/images/{repo}/push?tag={name}")
        aux = [m["aux"] for m in messages(out) if "aux" in m]
        assert status == 200 and aux, out
        digests[name] = aux[0]
        berthd.request("DELETE", f"/images/{repo}:{name}")
    docker_manifest = "application/vnd.docker.distribution.manifest.v2+json"
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"mediaType": docker_manifest, "digest": digests["other"]["Digest"], "size": digests["other"]["Size"],
         "platform": {"os": "linux", "architecture": "riscv64"}},
        {"mediaType": docker_manifest, "digest": digests["host"]["Digest"], "size": digests["host"]["Size"],
         "platform": {"os": "linux", "architecture": arch}},
    ]}
    r = registry.push_manifest("multi/img", "multi", index, "application/vnd.oci.image.index.v1+json")
    assert r.status == 201, r
    index_digest = r.headers["Docker-Content-Digest"]
    status, out = berthd.request("POST", f"/images/create?fromImage={repo}&tag=multi")
    assert status == 200 and f"Digest: {index_digest}".encode() in out, out
    info = berthd.json("GET", f"/images/{repo}:multi/json")
    assert isinstance(info, dict) and info["Id"] == ids["host"]
    assert f"{repo}@{index_digest}" in info["RepoDigests"]
    status, out = berthd.request("POST", f"/images/create?fromImage={repo}&tag=multi&platform=linux/riscv64")
    assert status == 200, out
    info = berthd.json("GET", f"/images/{repo}:multi/json")
    assert isinstance(info, dict) and info["Id"] == ids["other"]
    status, out = berthd.request("POST", f"/images/create?fromImage={repo}&tag=multi&platform=linux/mips64")
    assert status == 404 and b"no matching manifest for linux/mips64" in out, out
    for image_id in ids.values():
        berthd.request("DELETE", f"/images/{image_id}?force=1")


# --- a registry killed in the middle of a push --------------------------------------------------

def _blobs_match_their_names(root: str) -> list[str]:
    """Every blob the registry would serve: each must hash to its own name."""
    import hashlib

    names = []
    blob_dir = Path(root) / "blobs" / "sha256"
    for p in blob_dir.iterdir():
        if p.name.startswith("."):
            continue
        h = hashlib.sha256()
        with open(p, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        assert h.hexdigest() == p.name, f"blob {p.name} holds other bytes"
        names.append(p.name)
    return names


def test_registry_killed_mid_push_then_push_again(berthd: Daemon, registry: Registry) -> None:
    import signal
    import threading

    repo = f"{registry.host}/kill/me"
    image_id = make_image(berthd, f"{repo}:1", 48 << 20)
    result: dict[str, object] = {}

    def push() -> None:
        result["status"], result["out"] = berthd.request("POST", f"/images/{repo}/push?tag=1", timeout=120)

    uploads = Path(registry.root) / "_uploads"
    t = threading.Thread(target=push)
    t.start()
    deadline = time.time() + 60
    killed = False
    while time.time() < deadline and t.is_alive():
        sizes = [p.stat().st_size for p in uploads.glob("*/data") if p.exists()]
        if any(s > (4 << 20) for s in sizes):  # bytes of the big layer are arriving: kill now
            registry.stop(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.002)
    t.join(120)
    assert killed, "the push finished before the registry could be killed"
    assert b"error" in result["out"], result  # type: ignore[operator]
    registry.start()
    big = (48 << 20) * 9 // 10
    assert all(os.path.getsize(Path(registry.root) / "blobs" / "sha256" / n) < big
               for n in _blobs_match_their_names(registry.root)), "a partial layer became a blob"
    assert registry.request("GET", "/v2/kill/me/tags/list").status == 404

    status, out = berthd.request("POST", f"/images/{repo}/push?tag=1", timeout=120)
    assert status == 200 and b'"aux"' in out and b"errorDetail" not in out, out
    _blobs_match_their_names(registry.root)
    berthd.request("DELETE", f"/images/{repo}:1")
    status, out = berthd.request("POST", f"/images/create?fromImage={repo}&tag=1", timeout=120)
    assert status == 200 and b"Downloaded newer image" in out, out
    info = berthd.json("GET", f"/images/{repo}:1/json")
    assert isinstance(info, dict) and info["Id"] == image_id
    berthd.request("DELETE", f"/images/{repo}:1")


# --- a docker.io mirror ---------------------------------------------------------------------------

@needs_docker
def test_registry_mirror_makes_docker_pull_busybox_work_offline(fresh_berthd: Callable[..., Daemon],
                                                                registry: Registry) -> None:
    """`berthd --registry-mirror`: `docker pull busybox` comes from the mirror (no internet here);
    a dead mirror listed first is skipped."""
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        pytest.skip("skopeo is not installed")
    from tests.conftest import busybox_tar

    r = subprocess.run([skopeo, "--insecure-policy", "copy", "--dest-tls-verify=false",
                        f"docker-archive:{busybox_tar()}", f"docker://{registry.host}/library/busybox:latest"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    d = fresh_berthd(["--registry-mirror", f"http://127.0.0.1:{_free_port()}",
                      "--registry-mirror", f"http://{registry.host}"])
    d.request("DELETE", "/images/busybox:latest?force=1")
    out = docker(d, "pull", "busybox", timeout=120)
    assert "Pull complete" in out.stdout and "Status: Downloaded newer image for busybox:latest" in out.stdout, out
    assert docker(d, "run", "--rm", "busybox", "echo", "from-mirror").stdout.strip() == "from-mirror"
    missing = docker(d, "pull", "busybox:nope", check=False)
    assert missing.returncode != 0

    # what the mirror serves, inspected without pulling (docker-py's inspect_distribution)
    manifest = registry.request("GET", "/v2/library/busybox/manifests/latest",
                                headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    info = d.json("GET", "/distribution/busybox:latest/json")
    assert isinstance(info, dict)
    assert info["Descriptor"]["digest"] == manifest.headers["Docker-Content-Digest"]
    assert info["Descriptor"]["size"] == len(manifest.body)
    assert {"architecture": "amd64", "os": "linux"} in info["Platforms"]
    status, out = d.request("GET", f"/distribution/{registry.host}/library/nope:latest/json")
    assert status == 404 and b"not found" in out, out

    # `docker pull -a` lists the tags on the mirror too
    r = subprocess.run([skopeo, "--insecure-policy", "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
                        f"docker://{registry.host}/library/busybox:latest",
                        f"docker://{registry.host}/library/busybox:second"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = docker(d, "pull", "-a", "busybox", timeout=120)
    assert "docker.io/library/busybox" in out.stdout, out
    tags = d.json("GET", "/images/busybox:second/json")["RepoTags"]  # type: ignore[index]
    assert {"busybox:latest", "busybox:second"} <= set(tags)


def test_a_layer_whose_files_changed_is_not_pushed(berthd: Daemon, registry: Registry) -> None:
    """Layers keep no second copy of their tar: push rebuilds it from the layer's files and checks
    it against the DiffID before uploading, so a file changed on disk fails the push cleanly."""
    repo = f"{registry.host}/tamper/me"
    image_id = make_image(berthd, f"{repo}:1", 1 << 16)
    diff_id = berthd.json("GET", f"/images/{image_id}/json")["RootFS"]["Layers"][0]  # type: ignore[index]
    status, saved = berthd.request("GET", f"/images/{image_id}/get")
    assert status == 200
    with tarfile.open(fileobj=io.BytesIO(saved)) as tf:  # save rebuilds the very tar: its digest is the DiffID
        member = tf.extractfile(f"blobs/sha256/{diff_id.split(':')[1]}")
        assert member is not None
        assert "sha256:" + hashlib.sha256(member.read()).hexdigest() == diff_id
    [path] = [p for p in Path(berthd.root).rglob("diff/data0.bin")
              if p.stat().st_size == 1 << 16 and p.read_bytes()]
    original = path.read_bytes()
    path.write_bytes(bytes([original[0] ^ 1]) + original[1:])
    try:
        status, out = berthd.request("POST", f"/images/{repo}/push?tag=1", timeout=120)
        assert b"changed on disk" in out, out
        assert registry.request("GET", "/v2/tamper/me/tags/list").status == 404
    finally:
        path.write_bytes(original)
    status, out = berthd.request("POST", f"/images/{repo}/push?tag=1", timeout=120)
    assert status == 200 and b'"aux"' in out and b"errorDetail" not in out, out
    berthd.request("DELETE", f"/images/{repo}:1")


def test_push_resumes_when_the_registry_restarts(berthd: Daemon, registry: Registry) -> None:
    """Killed and back within a second: the same push asks the session's offset and sends the rest."""
    import signal
    import threading

    repo = f"{registry.host}/resume/push"
    image_id = make_image(berthd, f"{repo}:1", 48 << 20)
    result: dict[str, object] = {}

    def push() -> None:
        result["status"], result["out"] = berthd.request("POST", f"/images/{repo}/push?tag=1", timeout=120)

    uploads = Path(registry.root) / "_uploads"
    t = threading.Thread(target=push)
    t.start()
    deadline = time.time() + 60
    while time.time() < deadline and t.is_alive():
        if any(p.stat().st_size > (4 << 20) for p in uploads.glob("*/data") if p.exists()):
            registry.stop(signal.SIGKILL)
            registry.start()
            break
        time.sleep(0.002)
    t.join(120)
    out = result["out"]
    assert result["status"] == 200 and b'"aux"' in out and b"errorDetail" not in out, out  # type: ignore[operator]
    _blobs_match_their_names(registry.root)
    berthd.request("DELETE", f"/images/{repo}:1")
    status, out = berthd.request("POST", f"/images/create?fromImage={repo}&tag=1", timeout=120)
    assert status == 200 and b"Downloaded newer image" in out, out
    assert berthd.json("GET", f"/images/{repo}:1/json")["Id"] == image_id  # type: ignore[index]
    berthd.request("DELETE", f"/images/{repo}:1")


def test_pull_refuses_a_blob_that_unpacks_fine_but_has_other_bytes(berthd: Daemon, registry: Registry) -> None:
    """The same tar gzipped differently: the DiffID matches, the blob digest does not. The layer
    streams into the store while it downloads, yet nothing is committed."""
    import gzip

    repo = f"{registry.host}/swap/img"
    make_image(berthd, f"{repo}:1", 1 << 18)
    status, out = berthd.request("POST", f"/images/{repo}/push?tag=1")
    assert status == 200, out
    berthd.request("DELETE", f"/images/{repo}:1")
    manifest = json.loads(registry.request("GET", "/v2/swap/img/manifests/1", headers={
        "Accept": "application/vnd.docker.distribution.manifest.v2+json"}).body)
    blob = Path(registry.root) / "blobs" / "sha256" / manifest["layers"][0]["digest"].split(":")[1]
    blob.write_bytes(gzip.compress(gzip.decompress(blob.read_bytes()), compresslevel=9, mtime=1))
    before = {p.name for p in (Path(berthd.root) / "overlay").iterdir()} if (Path(berthd.root) / "overlay").exists() \
        else set()
    status, out = berthd.request("POST", f"/images/create?fromImage={repo}&tag=1")
    assert b"verification failed" in out, out
    assert berthd.request("GET", f"/images/{repo}:1/json")[0] == 404
    after = {p.name for p in (Path(berthd.root) / "overlay").iterdir()} if (Path(berthd.root) / "overlay").exists() \
        else set()
    assert after == before, "a layer directory was left behind"


def test_pull_all_tags(berthd: Daemon, registry: Registry) -> None:
    """`berth pull -a` (and the API with no tag): every tag of the repository."""
    repo = f"{registry.host}/all/tags"
    ids = {}
    for tag in ("a", "b", "c"):
        ids[tag] = make_image(berthd, f"{repo}:{tag}", 1 << 12)
        status, out = berthd.request("POST", f"/images/{repo}/push?tag={tag}")
        assert status == 200 and b'"aux"' in out, out
        berthd.request("DELETE", f"/images/{repo}:{tag}")
    out = berth(berthd, "pull", "-a", repo)
    assert out.returncode == 0, out
    assert out.stdout.count("Pulling from all/tags") == 3 and f"Status: Downloaded newer image for {repo}" in out.stdout
    for tag, image_id in ids.items():
        assert berthd.json("GET", f"/images/{repo}:{tag}/json")["Id"] == image_id  # type: ignore[index]
    status, out = berthd.request("POST", f"/images/create?fromImage={repo}")
    assert status == 200 and f"Status: Image is up to date for {repo}".encode() in out, out
    assert berth(berthd, "pull", "-a", f"{repo}:a").returncode == 1
    for tag in ids:
        berthd.request("DELETE", f"/images/{repo}:{tag}")
