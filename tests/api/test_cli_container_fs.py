"""The `berth` CLI's commit, cp, export, diff, stats, update, pause and unpause against berthd."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .test_cli import IMAGE, Berth


@pytest.fixture
def berth(daemon_host: str) -> Iterator[Berth]:
    b = Berth(daemon_host)
    yield b
    b.cleanup()


def test_cp_both_ways_diff_commit_export(berth: Berth, tmp_path: Path) -> None:
    name = berth.name("fs")
    berth.ok("run", "-d", "--name", name, IMAGE, "sh", "-c", "mkdir /data; echo in > /data/f; ln -s /etc /l; "
                                                           "sleep 1000")
    berth.ok("exec", name, "true")
    src = tmp_path / "host.txt"
    src.write_text("from host\n")
    berth.ok("cp", str(src), f"{name}:/data/")
    berth.ok("cp", str(src), f"{name}:/data/renamed.txt")
    assert berth.ok("exec", name, "cat", "/data/host.txt", "/data/renamed.txt") == "from host\n" * 2
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    berth.ok("cp", f"{name}:/data", str(out_dir))
    assert (out_dir / "data" / "f").read_text() == "in\n"
    berth.ok("cp", f"{name}:/data/.", str(tmp_path / "contents"))
    assert (tmp_path / "contents" / "renamed.txt").read_text() == "from host\n"
    berth.ok("cp", f"{name}:/l/passwd", str(tmp_path / "pw"))
    assert (tmp_path / "pw").read_text().startswith("root:x:0:0:")
    raw = berth("cp", f"{name}:/data/f", "-")
    assert tarfile.open(fileobj=io.BytesIO(raw.stdout.encode())).getnames() == ["f"]
    assert "A /data/host.txt" in berth.ok("diff", name).splitlines()

    tag = berth.tag_name("commit")
    image_id = berth.ok("commit", "-m", "note", "-a", "me", "-c", "CMD cat /data/f", name, tag).strip()
    assert image_id.startswith("sha256:")
    assert berth.ok("run", "--rm", tag) == "in\n"
    exported = tmp_path / "exp.tar"
    berth.ok("export", "-o", str(exported), name)
    with tarfile.open(exported) as tf:
        assert "data/host.txt" in tf.getnames()


def test_stats_update_pause(berth: Berth) -> None:
    name = berth.name("res")
    berth.ok("run", "-d", "--name", name, IMAGE, "sleep", "1000")
    assert berth.ok("update", "-m", "64m", "--memory-swap", "128m", name) == f"{name}\n"
    table = berth.ok("stats", "--no-stream", name).splitlines()
    assert table[0].split()[:4] == ["CONTAINER", "ID", "NAME", "CPU"]
    assert table[1].split()[1] == name and "/ 64MiB" in table[1]
    assert berth.ok("update", "--memory", "96m", "--memory-swap", "200m", "--restart", "unless-stopped",
                    name) == f"{name}\n"
    assert berth.ok("inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.RestartPolicy.Name}}",
                    name) == f"{96 * 1024 * 1024} unless-stopped\n"
    assert berth.ok("pause", name) == f"{name}\n"
    assert berth.ok("inspect", "-f", "{{.State.Status}}", name) == "paused\n"
    assert berth.ok("unpause", name) == f"{name}\n"
    assert berth.ok("inspect", "-f", "{{.State.Status}}", name) == "running\n"
