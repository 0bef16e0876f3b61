"""The ssh driver's pure parts: paths on the host, ssh/scp command lines, engine flags, and the
remote scripts' syntax (checked by the host's own sh, as the machine would run them)."""

from __future__ import annotations

import subprocess

import pytest

from berth.machine import sshscripts
from berth.machine.driver import engine_flags
from berth.machine.model import EngineSpec, MachineError, MachineSpec
from berth.machine.ssh import SSHDriver, layout
from berth.machine.sshconn import SSHTarget, parse_keys


def test_layout_standard_and_install_dir() -> None:
    std = layout(MachineSpec("a", "ssh", {"host": "h"}))
    assert (std["socket"], std["data_root"], std["venv"]) == ("/run/berth/berth.sock", "/var/lib/berth",
                                                              "/opt/berth/venv")
    own = layout(MachineSpec("a", "ssh", {"host": "h", "install_dir": "/srv/b/"}, EngineSpec(data_root="/d")))
    assert (own["socket"], own["data_root"], own["config_file"], own["shim"]) == (
        "/srv/b/run/berth.sock", "/d", "/srv/b/berthd.json", "/srv/b/bin/docker")


def test_ssh_and_scp_command_lines() -> None:
    t = SSHTarget("far", "fe80::1", 2222, "ops", "/k", "/state/far/known_hosts")
    argv = t.ssh_argv(["uname", "-r"])
    assert argv[0] == "ssh" and argv[-5:] == ["-T", "--", "fe80::1", "uname", "-r"]
    assert ["-p", "2222", "-l", "ops"] == argv[argv.index("-p"):argv.index("-p") + 4]
    assert "BatchMode=yes" in argv and "-i" in argv and "UserKnownHostsFile=/state/far/known_hosts ~/.ssh/known_hosts" in argv
    assert "BatchMode=yes" not in t.ssh_argv([], tty=True, batch=False)
    scp = t.scp_argv(["a.txt"], t.remote_path("/tmp/"), recursive=True)
    assert scp[-4:] == ["-r", "--", "a.txt", "ops@[fe80::1]:/tmp/"] and scp[scp.index("-P") + 1] == "2222"
    assert SSHDriver._url(SSHTarget("far", "h", 22, "root", None, "/k"), "/run/berth/berth.sock") == \
        "ssh://root@h/run/berth/berth.sock"
    assert SSHDriver._url(t, "/s.sock") == "ssh://ops@[fe80::1]:2222/s.sock"


def test_engine_flags_and_registry_mirrors() -> None:
    engine = EngineSpec({"type": "db"}, ("10.0.0.1:5000",), (), None, {"debug": True, "no-x": False, "dns": ["a", "b"]})
    assert engine_flags(engine, "m", "") == ["--label", "type=db", "--insecure-registry", "10.0.0.1:5000", "--debug",
                                             "--dns", "a", "--dns", "b"]
    mirrored = EngineSpec(registry_mirrors=("https://mirror.example",))
    assert engine_flags(mirrored, "m", "  --registry-mirror URL") == ["--registry-mirror", "https://mirror.example"]
    with pytest.raises(MachineError) as e:
        engine_flags(mirrored, "m", "usage: berthd [-h]")
    assert e.value.phase == "configure" and "--registry-mirror" in e.value.message


def test_parse_keys_ignores_login_noise() -> None:
    assert parse_keys("Welcome!\nberthd=/v/bin/berthd\nanswer=HTTP/1.1 200 OK\n x=1\n") == {
        "berthd": "/v/bin/berthd", "answer": "HTTP/1.1 200 OK"}


@pytest.mark.parametrize("name", ["CONNECT", "PROBE", "INSTALL", "CONFIGURE", "START", "STOP", "RELOAD", "STATUS",
                                  "REMOVE"])
def test_remote_scripts_parse(name: str) -> None:
    script = sshscripts.PREAMBLE + getattr(sshscripts, name)
    proc = subprocess.run(["sh", "-n"], input=script, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
