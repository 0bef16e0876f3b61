"""The real docker CLI (28.x) against berthd: the engine-core acceptance flows."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable

import pytest

from ..conftest import Daemon, docker_cli

DOCKER = docker_cli()
pytestmark = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")


def docker(d: Daemon, *args: str, input: bytes | None = None, check: bool = True,
           timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DOCKER_HOST=d.host)
    env.pop("DOCKER_CONTEXT", None)
    p = subprocess.run([DOCKER or "docker", *args], input=input, capture_output=True, env=env,
                       timeout=timeout)
    out = subprocess.CompletedProcess(p.args, p.returncode, p.stdout.decode(errors="replace"),
                                      p.stderr.decode(errors="replace"))
    if check and out.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} -> {out.returncode}: {out.stderr}")
    return out


@pytest.fixture
def name() -> str:
    return f"dcli-{uuid.uuid4().hex[:8]}"


def test_run_rm_prints_output(berthd: Daemon) -> None:
    out = docker(berthd, "run", "--rm", "busybox", "echo", "hi")
    assert out.stdout == "hi\n"
    # --rm: nothing is left behind
    assert "busybox" not in docker(berthd, "ps", "-a", "--format", "{{.Image}}").stdout


def test_run_exit_codes(berthd: Daemon) -> None:
    assert docker(berthd, "run", "--rm", "busybox", "sh", "-c", "exit 3", check=False).returncode == 3
    missing = docker(berthd, "run", "--rm", "busybox", "/no/such/binary", check=False)
    assert missing.returncode == 127, missing.stderr
    noimage = docker(berthd, "run", "--rm", "nosuchimage:1", "true", check=False)
    assert noimage.returncode == 125
    assert "Unable to find image 'nosuchimage:1' locally" in noimage.stderr


def test_detached_lifecycle_keeps_writable_layer(berthd: Daemon, name: str) -> None:
    cid = docker(berthd, "run", "-d", "--name", name, "busybox", "sleep", "1000").stdout.strip()
    try:
        assert len(cid) == 64
        ps = docker(berthd, "ps", "--format", "{{.Names}} {{.Status}}").stdout
        assert f"{name} Up" in ps
        ls = docker(berthd, "exec", name, "ls", "/")
        assert {"bin", "etc", "proc", "tmp"} <= set(ls.stdout.split())
        docker(berthd, "exec", name, "sh", "-c", "echo kept > /root/state")
        assert docker(berthd, "exec", name, "sh", "-c", "exit 7", check=False).returncode == 7
        docker(berthd, "stop", "-t", "1", name)
        assert docker(berthd, "inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "false"
        docker(berthd, "start", name)
        assert docker(berthd, "exec", name, "cat", "/root/state").stdout == "kept\n"
    finally:
        docker(berthd, "rm", "-f", name)
    assert name not in docker(berthd, "ps", "-a", "--format", "{{.Names}}").stdout


def test_images_save_load_keeps_id(berthd: Daemon, tmp_path) -> None:  # type: ignore[no-untyped-def]
    before = docker(berthd, "images", "--no-trunc", "-q", "busybox:latest").stdout.strip()
    assert before.startswith("sha256:")
    out = tmp_path / "bb.tar"
    docker(berthd, "save", "-o", str(out), "busybox")
    tag = f"dcli-{uuid.uuid4().hex[:6]}:x"
    docker(berthd, "tag", "busybox", tag)
    docker(berthd, "rmi", tag)
    loaded = docker(berthd, "load", "-i", str(out))
    assert "Loaded image: busybox:latest" in loaded.stdout
    assert docker(berthd, "images", "--no-trunc", "-q", "busybox:latest").stdout.strip() == before
    table = docker(berthd, "images").stdout.splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert any(line.split()[:3] == ["busybox", "latest", before[7:19]] for line in table[1:])


def test_rmi_of_used_image_is_refused(berthd: Daemon, name: str) -> None:
    # an image of the test's own: busybox on the shared daemon may have other tests' images on it,
    # and an image with children is a conflict of its own (checked first, as by dockerd)
    repo = f"{name}-img"
    docker(berthd, "run", "--name", f"{name}-src", "busybox", "true")
    docker(berthd, "commit", f"{name}-src", f"{repo}:latest")
    docker(berthd, "rm", f"{name}-src")
    image_id = docker(berthd, "images", "--no-trunc", "-q", f"{repo}:latest").stdout.strip()
    docker(berthd, "run", "-d", "--name", name, repo, "sleep", "1000")
    try:
        out = docker(berthd, "rmi", repo, check=False)
        assert out.returncode == 1
        assert "conflict: unable to remove repository reference" in out.stderr
        status, body = berthd.request("DELETE", f"/images/{image_id}")
        assert status == 409 and b"being used by running container" in body
        # a second tag is just untagged, as dockerd does
        tag = f"dcli-{uuid.uuid4().hex[:6]}:used"
        docker(berthd, "tag", repo, tag)
        assert docker(berthd, "rmi", tag).stdout == f"Untagged: {tag}\n"
    finally:
        docker(berthd, "rm", "-f", name)
    assert docker(berthd, "images", "-q", repo).stdout.strip() == image_id[7:19]
    docker(berthd, "rmi", repo)


def test_logs_and_inspect(berthd: Daemon, name: str) -> None:
    docker(berthd, "run", "--name", name, "busybox", "sh", "-c", "echo one; echo two >&2; echo three")
    try:
        # stdout and stderr are separate pipes, so only the order within each stream is defined
        logs = docker(berthd, "logs", name)
        assert logs.stdout == "one\nthree\n" and logs.stderr == "two\n"
        stamped = docker(berthd, "logs", "-t", name).stdout.splitlines()[0]
        assert stamped.endswith("Z one") and stamped[4] == "-"
        assert docker(berthd, "inspect", "-f", "{{.State.ExitCode}} {{.Path}} {{json .Args}}",
                      name).stdout.strip() == '0 sh ["-c","echo one; echo two >&2; echo three"]'
    finally:
        docker(berthd, "rm", name)
    docker(berthd, "run", "--name", name, "busybox", "sh", "-c", "for i in 1 2 3 4; do echo $i; done")
    try:
        assert docker(berthd, "logs", "--tail", "2", name).stdout == "3\n4\n"
    finally:
        docker(berthd, "rm", name)


def test_entrypoint_and_cmd_semantics(berthd: Daemon) -> None:
    # arguments to run replace CMD; --entrypoint resets CMD
    assert docker(berthd, "run", "--rm", "--entrypoint", "echo", "busybox").stdout == "\n"
    assert docker(berthd, "run", "--rm", "--entrypoint", "echo", "busybox", "a", "b").stdout == "a b\n"
    out = docker(berthd, "run", "--rm", "-e", "FOO=bar", "-w", "/tmp", "-u", "nobody", "--hostname", "h1",
                 "busybox", "sh", "-c", 'echo $FOO $(pwd) $(id -u) $(hostname)')
    assert out.stdout == "bar /tmp 65534 h1\n"


def test_rm_running_needs_force(berthd: Daemon, name: str) -> None:
    docker(berthd, "run", "-d", "--name", name, "busybox", "sleep", "1000")
    try:
        out = docker(berthd, "rm", name, check=False)
        assert out.returncode == 1 and "cannot remove a running container" in out.stderr.lower()
        dup = docker(berthd, "run", "-d", "--name", name, "busybox", "true", check=False)
        assert dup.returncode == 125 and "is already in use" in dup.stderr
    finally:
        docker(berthd, "rm", "-f", name)


def test_system_df_counts_shared_layers_once(berthd: Daemon, name: str) -> None:
    """`docker system df -v`: containers with their writable-layer size, images with the bytes they
    share with other images, and every layer counted once in the total."""
    docker(berthd, "run", "-d", "--name", name, "busybox", "sh", "-c", "printf 12345 > /five; sleep 100")
    try:
        docker(berthd, "exec", name, "test", "-s", "/five")
        docker(berthd, "commit", name, f"{name}:child")
        df = berthd.json("GET", "/system/df")
        assert isinstance(df, dict)
        [mine] = [c for c in df["Containers"] if c["Names"] == [f"/{name}"]]
        assert mine["SizeRw"] == 5 and mine["State"] == "running"
        images = {i["Id"]: i for i in df["Images"]}
        base = berthd.json("GET", "/images/busybox/json")["Id"]  # type: ignore[index]
        child = berthd.json("GET", f"/images/{name}:child/json")["Id"]  # type: ignore[index]
        assert images[base]["Containers"] >= 1 and images[child]["Containers"] == 0
        assert f"{name}:child" in images[child]["RepoTags"]
        # the child stands on busybox's layers: those bytes are shared, its own 5 are not
        assert images[child]["SharedSize"] == images[base]["Size"] == images[base]["SharedSize"]
        assert images[child]["Size"] == images[base]["Size"] + 5
        assert df["LayersSize"] < sum(i["Size"] for i in df["Images"])
        out = docker(berthd, "system", "df", "-v").stdout
        assert "Containers space usage:" in out and name in out
    finally:
        docker(berthd, "rm", "-f", name)
        docker(berthd, "rmi", f"{name}:child")


def test_prune_filters_until_and_label_not(fresh_berthd: Callable[..., Daemon]) -> None:
    """`until` keeps what was created after it (a duration, a timestamp or a date, as dockerd reads
    them) and `label!` keeps what carries the label; the reclaimed bytes are reported."""
    d = fresh_berthd()
    docker(d, "run", "--name", "old-plain", "busybox", "sh", "-c", "printf 1234567 > /seven")
    docker(d, "run", "--name", "old-kept", "--label", "keep=yes", "busybox", "true")
    docker(d, "network", "create", "net-old")
    out = docker(d, "container", "prune", "-f", "--filter", "until=1h").stdout
    assert "Total reclaimed space: 0B" in out  # both were made within the hour
    assert docker(d, "network", "prune", "-f", "--filter", "until=1h").stdout.strip() == ""
    status, body = d.request("POST", '/containers/prune?filters={"until":["yesterday-ish"]}')
    assert status == 400 and b"failed to parse value as time or duration" in body, body
    status, body = d.request("POST", '/containers/prune?filters={"dangling":["true"]}')
    assert status == 400 and b"invalid filter 'dangling'" in body, body
    out = docker(d, "container", "prune", "-f", "--filter", "label!=keep=yes", "--filter",
                 f"until={int(time.time()) + 5}").stdout
    assert "Total reclaimed space: 7B" in out, out
    names = docker(d, "ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert names == ["old-kept"]
    assert "net-old" in docker(d, "network", "prune", "-f", "--filter", "until=0s").stdout


def test_attached_run_reports_attach_before_start(berthd: Daemon, name: str) -> None:
    since = str(int(time.time()) - 1)
    assert docker(berthd, "run", "--rm", "--name", name, "busybox", "echo", "hi").stdout == "hi\n"
    docker(berthd, "run", "-d", "--name", f"{name}-d", "busybox", "true")
    docker(berthd, "rm", "-f", f"{name}-d")
    out = docker(berthd, "events", "--since", since, "--until", str(int(time.time()) + 1), "--filter",
                 "type=container", "--format", "{{.Action}} {{.Actor.Attributes.name}}").stdout.splitlines()
    mine = [line.split()[0] for line in out if line.endswith(f" {name}")]
    assert mine[:3] == ["create", "attach", "start"], out  # as dockerd: the CLI attaches, then starts
    assert "attach" not in [line.split()[0] for line in out if line.endswith(f" {name}-d")]


def test_dockerenv_exec_groups_and_ps_command(berthd: Daemon, name: str) -> None:
    """Small things scripts rely on, as dockerd has them: /.dockerenv exists (but is no change of
    the container's), an exec's primary group is a supplementary one too, and ps quotes an
    argument with a space."""
    docker(berthd, "run", "-d", "--name", name, "busybox", "sh", "-c", "echo x > /made; sleep 100")
    try:
        assert docker(berthd, "exec", name, "stat", "-c", "%s %a %u", "/.dockerenv").stdout == "0 755 0\n"
        assert docker(berthd, "exec", "-u", "1000", name, "id").stdout.strip() == "uid=1000 gid=0(root) groups=0(root)"
        docker(berthd, "exec", name, "test", "-f", "/made")
        assert docker(berthd, "diff", name).stdout.split() == ["A", "/made"]
        ps = docker(berthd, "ps", "--no-trunc", "--filter", f"name={name}", "--format", "{{.Command}}").stdout
        assert ps.strip() == "\"sh -c 'echo x > /made; sleep 100'\""
        docker(berthd, "commit", name, f"{name}:img")
        layer = docker(berthd, "run", "--rm", f"{name}:img", "cat", "/made").stdout
        assert layer == "x\n"
        saved = docker(berthd, "history", "--format", "{{.Size}}", f"{name}:img").stdout.split()[0]
        assert saved == "2B"  # /made's bytes only: /.dockerenv and the /etc files stay out
    finally:
        docker(berthd, "rm", "-f", name)
        docker(berthd, "rmi", f"{name}:img", check=False)


def test_ps_filters_volume_network_publish_expose(berthd: Daemon, name: str) -> None:
    net, vol = f"{name}-n", f"{name}-v"
    docker(berthd, "network", "create", net)
    try:
        docker(berthd, "run", "-d", "--name", f"{name}-a", "-p", "127.0.0.1::80", "--expose", "90", "-v",
               f"{vol}:/data", "--network", net, "busybox", "sleep", "100")
        docker(berthd, "run", "-d", "--name", f"{name}-b", "busybox", "sleep", "100")
        public = docker(berthd, "port", f"{name}-a", "80").stdout.strip().rsplit(":", 1)[1]

        def ps(flt: str) -> list[str]:
            return sorted(docker(berthd, "ps", "--filter", f"name={name}", "--filter", flt,
                                 "--format", "{{.Names}}").stdout.split())

        a, b = [f"{name}-a"], [f"{name}-b"]
        assert ps(f"volume={vol}") == a and ps("volume=/data") == a and ps("volume=nope") == []
        assert ps(f"network={net}") == a and ps("network=bridge") == b
        assert ps(f"publish={public}") == a and ps(f"publish={public}/udp") == []
        assert ps(f"publish={int(public) - 1}-{int(public) + 1}") == a
        assert ps("expose=80") == a and ps("expose=90") == a and ps("expose=91") == []
        bad = docker(berthd, "ps", "--filter", "publish=http", check=False)
        assert bad.returncode != 0 and "invalid port filter" in bad.stderr
    finally:
        docker(berthd, "rm", "-f", f"{name}-a", f"{name}-b", check=False)
        docker(berthd, "network", "rm", net, check=False)
        docker(berthd, "volume", "rm", vol, check=False)
