"""`berth compose` commands that need no daemon: config, version, the docker CLI plugin metadata."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from berth.compose.cli import compose, main


def test_plugin_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    main(["docker-cli-plugin-metadata"])
    meta = json.loads(capsys.readouterr().out)
    assert meta["SchemaVersion"] == "0.1.0" and meta["Vendor"] == "berth"


def test_config_prints_resolved_yaml(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    image: 'busybox:${TAG:-1}'\n    ports: [22:22]\n")
    result = CliRunner().invoke(compose, ["--project-directory", str(tmp_path), "-p", "demo", "config"])
    assert result.exit_code == 0, result.output
    assert "name: demo\n" in result.output
    assert "image: busybox:1\n" in result.output
    assert "published: '22'" in result.output and "target: 22" in result.output


def test_config_error_exit_code(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    image: 5\n")
    result = CliRunner().invoke(compose, ["--project-directory", str(tmp_path), "config", "-q"])
    assert result.exit_code == 1
    assert "services.web.image: must be a string, got integer 5" in result.output


def test_compose_help_stays_lean() -> None:
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "berth.cli.main", "compose", "--help"],
                         capture_output=True, text=True, check=True)
    mods = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    assert not {"http.client", "ruamel", "jsonschema", "berth.client.api", "asyncio"} & mods
