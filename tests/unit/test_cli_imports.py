"""The CLI's cold path stays lean: `berth --version` must not load HTTP, JSON or asyncio."""

import subprocess
import sys


def _loaded(*args: str) -> set[str]:
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "berth.cli.main", *args],
                         capture_output=True, text=True, check=True)
    return {line.split("|")[-1].strip() for line in out.stderr.splitlines() if "|" in line}


def test_version_imports_nothing_heavy() -> None:
    mods = _loaded("--version")
    assert not {"asyncio", "http.client", "h11", "click", "json", "ssl"} & mods, mods


def test_help_does_not_import_the_client() -> None:
    mods = _loaded("--help")
    assert "click" in mods
    assert not {"asyncio", "http.client", "berth.client.api", "berth.daemon", "berth.api"} & mods
