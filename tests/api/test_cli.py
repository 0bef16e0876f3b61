"""The real `berth` CLI against a real daemon (the `daemon_host` fixture: a unix:// URL whose
daemon has `busybox:latest`). Every container and tag made here is named `clitest-...` and removed.

Nothing here deletes images or containers it did not create: the daemon may be shared.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

IMAGE = "busybox:latest"


class Berth:
    """Runs `python -m berth.cli.main -H HOST ...` and remembers what to clean up."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.prefix = f"clitest-{uuid.uuid4().hex[:8]}"
        self.containers: list[str] = []
        self.tags: list[str] = []

    def name(self, purpose: str) -> str:
        name = f"{self.prefix}-{purpose}"
        self.containers.append(name)
        return name

    def tag_name(self, purpose: str) -> str:
        tag = f"{self.prefix}-{purpose}:1"
        self.tags.append(tag)
        return tag

    def __call__(
        self, *args: str, input: bytes | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
        proc = subprocess.run(
            [sys.executable, "-m", "berth.cli.main", "-H", self.host, *args],
            input=input,
            capture_output=True,
            timeout=timeout,
            env=env,
        )
        return subprocess.CompletedProcess(
            proc.args,
            proc.returncode,
            proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"),
        )

    def ok(self, *args: str, input: bytes | None = None) -> str:
        result = self(*args, input=input)
        assert result.returncode == 0, f"berth {' '.join(args)} -> {result.returncode}\n{result.stderr}"
        return result.stdout

    def cleanup(self) -> None:
        if self.containers:
            self("rm", "-f", *self.containers)
        if self.tags:
            self("rmi", *self.tags)


@pytest.fixture
def berth(daemon_host: str) -> Iterator[Berth]:
    b = Berth(daemon_host)
    yield b
    b.cleanup()


def test_run_prints_output(berth: Berth) -> None:
    result = berth("run", "--rm", IMAGE, "echo", "hi")
    assert (result.returncode, result.stdout) == (0, "hi\n")


def test_run_separates_stdout_and_stderr(berth: Berth) -> None:
    result = berth("run", "--rm", IMAGE, "sh", "-c", "echo out; echo err >&2")
    assert (result.returncode, result.stdout, result.stderr) == (0, "out\n", "err\n")


def test_run_exit_status_is_the_containers(berth: Berth) -> None:
    assert berth("run", "--rm", IMAGE, "sh", "-c", "exit 3").returncode == 3


def test_run_named_without_rm_keeps_container(berth: Berth) -> None:
    name = berth.name("kept")
    assert berth("run", "--name", name, IMAGE, "sh", "-c", "exit 7").returncode == 7
    assert berth.ok("inspect", "-f", "{{.State.ExitCode}} {{.State.Running}}", name) == "7 false\n"
    ps = berth.ok("ps", "-a", "--filter", f"name={name}", "--format", "{{.Names}} {{.State}}")
    assert ps == f"{name} exited\n"


def test_run_missing_image_is_125(berth: Berth) -> None:
    result = berth("run", "--rm", "clitest-no-such-image")
    assert result.returncode == 125
    assert "Unable to find image 'clitest-no-such-image:latest' locally" in result.stderr
    assert "Error response from daemon:" in result.stderr


def test_run_missing_command_is_127(berth: Berth) -> None:
    result = berth("run", "--rm", IMAGE, "clitest-no-such-command")
    assert result.returncode == 127, result.stderr


def test_run_pipes_stdin_with_i(berth: Berth) -> None:
    result = berth("run", "--rm", "-i", IMAGE, "sh", "-c", "tr a-z A-Z", input=b"abc\n")
    assert (result.returncode, result.stdout) == (0, "ABC\n"), result.stderr
    result = berth("run", "--rm", "-i", IMAGE, "cat", input=b"line one\nline two\n")
    assert result.stdout == "line one\nline two\n"


def test_run_env_workdir_user_and_labels(berth: Berth) -> None:
    name = berth.name("opts")
    out = berth.ok(
        "run", "--name", name, "-e", "GREETING=hello", "-w", "/tmp", "-u", "65534", "-l", "clitest=yes",
        "--hostname", "boxy", IMAGE, "sh", "-c", 'echo "$GREETING $(pwd) $(id -u) $(hostname)"',
    )  # fmt: skip
    assert out == "hello /tmp 65534 boxy\n"
    assert berth.ok("inspect", "-f", '{{index .Config.Labels "clitest"}}', name) == "yes\n"


def test_detached_lifecycle(berth: Berth) -> None:
    name = berth.name("life")
    cid = berth.ok(
        "run", "-d", "--name", name, IMAGE, "sh", "-c", "echo one; echo two; exec sleep 300"
    ).strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid)

    ps = berth.ok("ps")
    header = ps.splitlines()[0]
    assert re.match(r"CONTAINER ID +IMAGE +COMMAND +CREATED +STATUS +PORTS +NAMES$", header)
    line = next(row for row in ps.splitlines() if row.endswith(name))
    assert line.startswith(cid[:12] + "   ")
    assert " Up " in line
    assert berth.ok("ps", "-q", "--no-trunc", "--filter", f"name={name}") == cid + "\n"

    assert berth.ok("inspect", "-f", "{{.State.Running}}", name) == "true\n"
    assert berth.ok("exec", name, "echo", "from exec") == "from exec\n"
    assert berth("exec", name, "sh", "-c", "exit 4").returncode == 4

    for _ in range(50):  # the log lines race the first `ps`
        if berth.ok("logs", name) == "one\ntwo\n":
            break
        time.sleep(0.1)
    assert berth.ok("logs", "--tail", "1", name) == "two\n"

    assert berth.ok("stop", "-t", "1", name) == name + "\n"
    assert berth.ok("inspect", "-f", "{{.State.Running}}", name) == "false\n"
    assert berth.ok("start", name) == name + "\n"
    assert berth.ok("inspect", "-f", "{{.State.Running}}", name) == "true\n"

    refused = berth("rm", name)
    assert refused.returncode == 1
    assert refused.stderr.startswith("Error response from daemon: ")

    assert berth.ok("rm", "-f", name) == name + "\n"
    assert berth.ok("ps", "-a", "-q", "--filter", f"name={name}") == ""


def test_multiple_names_report_each(berth: Berth) -> None:
    name = berth.name("multi")
    berth.ok("create", "--name", name, IMAGE, "true")
    result = berth("rm", name, f"{berth.prefix}-missing")
    assert result.returncode == 1
    assert result.stdout == name + "\n"
    assert result.stderr.count("Error response from daemon:") == 1


def test_wait_prints_exit_code(berth: Berth) -> None:
    name = berth.name("wait")
    berth.ok("run", "-d", "--name", name, IMAGE, "sh", "-c", "exit 5")
    assert berth.ok("wait", name) == "5\n"


def test_inspect_missing_object(berth: Berth) -> None:
    result = berth("inspect", f"{berth.prefix}-nothing")
    assert result.returncode == 1
    assert result.stdout == "[]\n"
    assert result.stderr == f"Error: No such object: {berth.prefix}-nothing\n"


def test_images_lists_busybox(berth: Berth) -> None:
    out = berth.ok("images")
    assert re.match(r"REPOSITORY +TAG +IMAGE ID +CREATED +SIZE$", out.splitlines()[0])
    assert any(
        re.match(r"busybox +latest +[0-9a-f]{12} +.+ ago +[0-9.]+[kMG]?B$", row) for row in out.splitlines()
    )
    assert "busybox:latest" in berth.ok("images", "--format", "{{.Repository}}:{{.Tag}}").splitlines()
    image_id = berth.ok("image", "inspect", "-f", "{{.Id}}", IMAGE).strip()
    assert image_id.split(":")[-1][:12] in berth.ok("images", "-q").split()


def test_tag_and_untag(berth: Berth) -> None:
    tag = berth.tag_name("tag")
    berth.ok("tag", IMAGE, tag)
    assert berth.ok("images", "--format", "{{.Repository}}:{{.Tag}}", tag.split(":")[0]) == tag + "\n"
    assert berth.ok("rmi", tag) == f"Untagged: {tag}\n"
    berth.tags.remove(tag)


def test_save_and_load(berth: Berth, tmp_path: Path) -> None:
    archive = tmp_path / "busybox.tar"
    berth.ok("save", "-o", str(archive), IMAGE)
    with tarfile.open(archive) as tar:
        assert "manifest.json" in tar.getnames()
    assert "Loaded image: busybox:latest" in berth.ok("load", "-i", str(archive))
    saved = subprocess.run(
        [sys.executable, "-m", "berth.cli.main", "-H", berth.host, "save", IMAGE],
        capture_output=True,
        check=True,
    ).stdout
    assert "Loaded image: busybox:latest" in berth.ok("load", input=saved)
    assert berth.ok("load", "-q", "-i", str(archive)) == ""


def test_rmi_of_used_image_is_refused(berth: Berth) -> None:
    name = berth.name("user")
    berth.ok("run", "-d", "--name", name, IMAGE, "sleep", "300")
    image_id = berth.ok("image", "inspect", "-f", "{{.Id}}", IMAGE).strip()
    # By ID and without -f: refused whether the image is in use or has several tags; nothing is removed.
    result = berth("rmi", image_id)
    assert result.returncode == 1
    assert result.stderr.startswith("Error response from daemon: ")
    assert berth.ok("image", "inspect", "-f", "{{.Id}}", IMAGE).strip() == image_id


def test_import_with_changes(berth: Berth, tmp_path: Path) -> None:
    archive = tmp_path / "rootfs.tar"
    with tarfile.open(archive, "w") as tar:
        data = b"imported\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    tag = berth.tag_name("imported")
    out = berth.ok("import", "-c", 'CMD ["/hello.txt"]', "-m", "from clitest", str(archive), tag)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}\n", out)
    assert (
        berth.ok("inspect", "-f", "{{json .Config.Cmd}} {{.Comment}}", tag) == '["/hello.txt"] from clitest\n'
    )


def test_events_between_times(berth: Berth) -> None:
    name = berth.name("events")
    since = str(int(time.time()) - 1)
    berth.ok("create", "--name", name, IMAGE, "true")
    until = str(int(time.time()) + 1)
    out = berth.ok(
        "events",
        "--since",
        since,
        "--until",
        until,
        "--filter",
        f"container={name}",
        "--format",
        "{{.Type}} {{.Action}}",
    )
    assert "container create" in out.splitlines()


def test_version_and_info(berth: Berth) -> None:
    assert re.fullmatch(r"1\.\d+\n", berth.ok("version", "--format", "{{.Server.ApiVersion}}"))
    assert berth.ok("info").startswith("Client:\n")
