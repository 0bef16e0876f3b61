"""The legacy builder (`POST /build`) through real clients: docker CLI, docker-py, berth CLI."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import pytest

from ..conftest import REPO, Daemon
from .test_docker_cli import DOCKER, docker

TWO_STAGE = """\
FROM busybox AS gen
ARG GREETING=hello
WORKDIR /work
COPY input.txt ./
RUN <<EOF
set -e
echo "$GREETING from stage one" > /work/out.txt
cat input.txt >> /work/out.txt
echo junk > /work/junk.txt
EOF

FROM busybox
COPY --from=gen /work/out.txt /out.txt
CMD ["cat", "/out.txt"]
"""

SIX_STEPS = """\
FROM busybox
ENV APP=demo
WORKDIR /app
COPY data.bin ./
RUN wc -c data.bin > size.txt
CMD ["cat", "size.txt"]
"""

needs_docker = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")


def legacy_build(d: Daemon, ctx: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env_backup = os.environ.get("DOCKER_BUILDKIT")
    os.environ["DOCKER_BUILDKIT"] = "0"
    try:
        return docker(d, "build", *args, str(ctx), check=check, timeout=120)
    finally:
        if env_backup is None:
            del os.environ["DOCKER_BUILDKIT"]
        else:
            os.environ["DOCKER_BUILDKIT"] = env_backup


def steps(output: str) -> list[tuple[str, bool]]:
    """(step line, used cache) for each `Step N/M` of a build's output."""
    out: list[tuple[str, bool]] = []
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Step "):
            out.append((line.split(" : ", 1)[1], i + 1 < len(lines) and lines[i + 1] == " ---> Using cache"))
    return out


@pytest.fixture
def tag() -> str:
    return f"bt-{uuid.uuid4().hex[:8]}"


@needs_docker
def test_two_stage_heredoc_arg_copy_from(berthd: Daemon, tmp_path: Path, tag: str) -> None:
    (tmp_path / "Dockerfile").write_text(TWO_STAGE)
    (tmp_path / "input.txt").write_text("src\n")
    out = legacy_build(berthd, tmp_path, "-t", f"{tag}:1", "--build-arg", "GREETING=hey")
    assert "Step 8/8 : CMD [\"cat\", \"/out.txt\"]" in out.stdout, out.stdout
    assert f"Successfully tagged {tag}:1" in out.stdout
    assert docker(berthd, "run", "--rm", f"{tag}:1").stdout == "hey from stage one\nsrc\n"
    listing = docker(berthd, "run", "--rm", f"{tag}:1", "ls", "/").stdout.split()
    assert "out.txt" in listing and "work" not in listing
    history = docker(berthd, "history", "--no-trunc", "--format", "{{.CreatedBy}}", f"{tag}:1").stdout
    assert '/bin/sh -c #(nop)  CMD ["cat" "/out.txt"]' in history
    assert "/bin/sh -c #(nop) COPY file:" in history

    gen = legacy_build(berthd, tmp_path, "-t", f"{tag}:gen", "--target", "gen")
    assert [s for s, _ in steps(gen.stdout)][-1] == "RUN <<EOF"
    assert "FROM busybox\n" not in gen.stdout.replace("FROM busybox AS gen", "")
    work = docker(berthd, "run", "--rm", f"{tag}:gen", "ls", "/work").stdout.split()
    assert work == ["input.txt", "junk.txt", "out.txt"]
    assert docker(berthd, "run", "--rm", f"{tag}:gen", "cat", "/work/out.txt").stdout.startswith("hello ")


@needs_docker
def test_cache_hits_misses_rename_and_dockerignore(berthd: Daemon, tmp_path: Path, tag: str) -> None:
    ctx = tmp_path / "one"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(SIX_STEPS)
    (ctx / "data.bin").write_bytes(os.urandom(64 * 1024))
    (ctx / "notes.txt").write_text("ignored\n")
    (ctx / ".dockerignore").write_text("notes.txt\n")
    first = legacy_build(berthd, ctx, "-t", f"{tag}:1")
    image_id = docker(berthd, "image", "inspect", "--format", "{{.Id}}", f"{tag}:1").stdout.strip()

    again = legacy_build(berthd, ctx, "-t", f"{tag}:1")
    assert [c for _, c in steps(again.stdout)] == [False] + [True] * 5, again.stdout
    assert f"Successfully built {image_id[7:19]}" in again.stdout

    # an ignored file neither reaches the context nor busts the cache
    (ctx / "notes.txt").write_text("changed\n")
    ignored = legacy_build(berthd, ctx, "-t", f"{tag}:1")
    assert [c for _, c in steps(ignored.stdout)] == [False] + [True] * 5, ignored.stdout
    assert docker(berthd, "run", "--rm", f"{tag}:1", "ls", "/app").stdout.split() == ["data.bin", "size.txt"]

    # a renamed (or freshly cloned) directory still hits: mtimes and paths are not in the keys
    moved = tmp_path / "two"
    shutil.copytree(ctx, moved)
    os.utime(moved / "data.bin", (1_000_000, 1_000_000))
    renamed = legacy_build(berthd, moved, "-t", f"{tag}:1")
    assert [c for _, c in steps(renamed.stdout)] == [False] + [True] * 5, renamed.stdout

    # editing the copied file reruns that COPY and what follows, nothing before it
    (moved / "data.bin").write_bytes(os.urandom(1000))
    edited = legacy_build(berthd, moved, "-t", f"{tag}:2")
    assert [c for _, c in steps(edited.stdout)] == [False, True, True, False, False, False], edited.stdout
    assert docker(berthd, "run", "--rm", f"{tag}:2").stdout == "1000 data.bin\n"
    assert first.returncode == 0

    # --no-cache runs everything
    nocache = legacy_build(berthd, moved, "--no-cache", "-t", f"{tag}:3")
    assert not any(c for _, c in steps(nocache.stdout))


@needs_docker
def test_malformed_dockerfile_names_line_and_column(berthd: Daemon, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN true\nRUNN nothing\n")
    before = docker(berthd, "images", "-q", "-a").stdout.split()
    out = legacy_build(berthd, tmp_path, check=False)
    assert out.returncode != 0
    assert "Dockerfile:3:1: unknown instruction: RUNN" in out.stderr, out.stderr
    assert "Step" not in out.stdout
    assert docker(berthd, "images", "-q", "-a").stdout.split() == before


@needs_docker
def test_failing_run_stops_the_build(berthd: Daemon, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN echo before\nRUN false\nRUN echo never\n")
    out = legacy_build(berthd, tmp_path, "--force-rm", check=False)
    assert out.returncode == 1
    assert "The command '/bin/sh -c false' returned a non-zero code: 1" in out.stderr, out.stderr
    assert "never" not in out.stdout


def _context(files: dict[str, bytes | str], mode: dict[str, int] | None = None) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            raw = data.encode() if isinstance(data, str) else data
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            info.mode = (mode or {}).get(name, 0o644)
            tf.addfile(info, io.BytesIO(raw))
    buf.seek(0)
    return buf


def _archive(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data.encode()))
    return buf.getvalue()


def test_dockerpy_build_config_and_copy_semantics(dockerpy, tag: str) -> None:  # type: ignore[no-untyped-def]
    dockerfile = """\
FROM busybox
ARG VERSION
ENV NAME=demo PATH_EXTRA=/opt/${VERSION}
LABEL org.example.version=$VERSION
EXPOSE 8080 53/udp
WORKDIR /srv/app
COPY src/ ./src/
COPY *.conf /etc/demo/
COPY --chown=1000:1000 --chmod=750 tool.sh /usr/local/bin/tool
ADD bundle.tar.gz /opt/bundle/
COPY <<EOF /srv/app/inline.txt
inline $NAME
EOF
RUN ls -ln /usr/local/bin/tool | awk '{print $1, $3, $4}' > /srv/app/tool.txt
USER nobody
STOPSIGNAL SIGQUIT
VOLUME /data
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /srv/app/inline.txt"]
"""
    ctx = _context({
        "Dockerfile": dockerfile,
        "src/a.txt": "a\n",
        "src/sub/b.txt": "b\n",
        "one.conf": "1\n",
        "two.conf": "2\n",
        "tool.sh": "#!/bin/sh\necho tool\n",
        "bundle.tar.gz": _archive({"inner/x.txt": "x\n"}),
    })
    image, logs = dockerpy.images.build(fileobj=ctx, custom_context=True, tag=f"{tag}:py",
                                        buildargs={"VERSION": "1.2"}, labels={"built.by": "test"}, rm=True)
    text = "".join(chunk.get("stream", "") for chunk in logs)
    assert "Successfully tagged" in text
    cfg = image.attrs["Config"]
    assert "NAME=demo" in cfg["Env"] and "PATH_EXTRA=/opt/1.2" in cfg["Env"]
    assert cfg["Labels"] == {"org.example.version": "1.2", "built.by": "test"}
    assert set(cfg["ExposedPorts"]) == {"8080/tcp", "53/udp"}
    assert cfg["WorkingDir"] == "/srv/app"
    assert cfg["User"] == "nobody"
    assert cfg["StopSignal"] == "SIGQUIT"
    assert cfg["Volumes"] == {"/data": {}}
    assert cfg["Entrypoint"] == ["/bin/sh", "-c"] and cfg["Cmd"] == ["cat /srv/app/inline.txt"]
    assert dockerpy.containers.run(image.id, remove=True) == b"inline demo\n"

    def sh(cmd: str) -> str:
        out = dockerpy.containers.run(image.id, [cmd], remove=True, user="root")
        return out.decode()

    assert sh("find /srv/app/src /etc/demo -type f | sort") == (
        "/etc/demo/one.conf\n/etc/demo/two.conf\n/srv/app/src/a.txt\n/srv/app/src/sub/b.txt\n")
    assert sh("cat /srv/app/tool.txt") == "-rwxr-x--- 1000 1000\n"
    assert sh("cat /opt/bundle/inner/x.txt") == "x\n"
    history = [h["CreatedBy"] for h in image.history()]
    assert any(h.startswith("|1 VERSION=1.2 /bin/sh -c ls -ln") for h in history), history

    # an unchanged rebuild is all cache hits and gives the same image
    ctx.seek(0)
    again, logs = dockerpy.images.build(fileobj=ctx, custom_context=True, tag=f"{tag}:py",
                                        buildargs={"VERSION": "1.2"}, labels={"built.by": "test"})
    assert again.id == image.id
    text = "".join(chunk.get("stream", "") for chunk in logs)
    assert "Running in" not in text

    # a different build arg is a different RUN (its history prefix differs)
    ctx.seek(0)
    other, _ = dockerpy.images.build(fileobj=ctx, custom_context=True, buildargs={"VERSION": "2"})
    assert other.id != image.id
    for img in (other.id, f"{tag}:py"):
        dockerpy.images.remove(img, force=True)


def test_dockerpy_build_error_in_stream(dockerpy) -> None:  # type: ignore[no-untyped-def]
    import docker.errors

    ctx = _context({"Dockerfile": "FROM busybox\nCOPY missing.txt /\n"})
    with pytest.raises(docker.errors.BuildError) as exc:
        dockerpy.images.build(fileobj=ctx, custom_context=True)
    assert "missing.txt" in str(exc.value)
    ctx = _context({"Dockerfile": "FROM busybox\nADD http://127.0.0.1:9/x /x\n"})  # nothing listens
    with pytest.raises(docker.errors.BuildError) as exc:
        dockerpy.images.build(fileobj=ctx, custom_context=True)
    assert "error downloading http://127.0.0.1:9/x" in str(exc.value)


def test_berth_cli_build(berthd: Daemon, tmp_path: Path, tag: str) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox\nARG X=1\nCOPY a.txt /a.txt\nRUN echo $X >> /a.txt\n")
    (tmp_path / "a.txt").write_text("a\n")
    (tmp_path / "secret.txt").write_text("s\n")
    (tmp_path / ".dockerignore").write_text("secret.txt\n")
    iid = tmp_path / "iid"
    env = dict(os.environ, BERTH_HOST=berthd.host, DOCKER_HOST=berthd.host)
    berth = [sys.executable, "-m", "berth.cli.main"]
    p = subprocess.run([*berth, "build", "-t", f"{tag}:cli", "--build-arg", "X=7", "--label", "k=v",
                        "--iidfile", str(iid), str(tmp_path)], capture_output=True, text=True, env=env,
                       cwd=REPO, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "Step 4/4 : RUN echo $X >> /a.txt" in p.stdout
    image_id = iid.read_text()
    assert image_id.startswith("sha256:")
    inspect = json.loads(berthd.request("GET", f"/images/{tag}:cli/json")[1])
    assert inspect["Id"] == image_id and inspect["Config"]["Labels"] == {"k": "v"}
    q = subprocess.run([*berth, "build", "-q", "--build-arg", "X=7", "--label", "k=v", str(tmp_path)],
                       capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert q.returncode == 0 and q.stdout.strip() == image_id, (q.stdout, q.stderr)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "Dockerfile").write_text("FROM busybox\nCOPY secret.txt /\n")
    p = subprocess.run([*berth, "build", "-f", str(bad / "Dockerfile"), str(tmp_path)],
                       capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert p.returncode == 1 and "secret.txt" in p.stderr, p.stderr


def test_builder_prune_forgets_the_cache(berthd: Daemon) -> None:
    ctx = _context({"Dockerfile": "FROM busybox\nENV PRUNE_TEST=1\n"}).getvalue()
    headers = {"Content-Type": "application/x-tar"}
    status, out = berthd.request("POST", "/build", ctx, headers)
    assert status == 200 and b"Successfully built" in out, out
    status, out = berthd.request("POST", "/build", ctx, headers)
    assert b"Using cache" in out
    pruned = berthd.json("POST", "/build/prune")
    assert isinstance(pruned, dict) and isinstance(pruned["SpaceReclaimed"], int), pruned
    status, out = berthd.request("POST", "/build", ctx, headers)
    assert status == 200 and b"Using cache" not in out, out
