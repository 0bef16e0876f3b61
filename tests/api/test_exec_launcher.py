"""Non-tty execs start through berth's launcher: the process must be what `runc exec` makes
(the container's namespaces, cgroups, capabilities, seccomp filter, user, rlimits), and the
OCI runtime must still take over where the launcher does not apply or is gone."""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest

from ..conftest import Daemon, docker_cli
from .test_docker_cli import docker

DOCKER = docker_cli()
pytestmark = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")

STATUS_FIELDS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp", "Seccomp_filters")


def _status(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in STATUS_FIELDS:
            out[key] = value.strip()
    return out


def _launcher_pid(d: Daemon) -> int:
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        if b"berth.runtime.launcher" in cmd and ppid == d.proc.pid:
            return int(entry)
    raise AssertionError("no launcher process under the daemon")


@pytest.fixture
def box(berthd: Daemon):  # type: ignore[no-untyped-def]
    made: list[str] = []

    def run(*opts: str) -> str:
        name = f"exl-{uuid.uuid4().hex[:8]}"
        docker(berthd, "run", "-d", "--name", name, *opts, "busybox", "sleep", "300")
        made.append(name)
        return name

    yield run
    if made:
        docker(berthd, "rm", "-f", *made, check=False)


@pytest.mark.parametrize("opts", [
    (),
    ("--cap-drop", "ALL", "--cap-add", "CHOWN", "--security-opt", "no-new-privileges"),
    ("--privileged",),
    ("--network", "host", "--pid", "host"),
], ids=["default", "few-caps-nnp", "privileged", "host-ns"])
def test_exec_process_matches_the_containers(berthd: Daemon, box, opts: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    c = box(*opts)
    pid = docker(berthd, "inspect", "-f", "{{.State.Pid}}", c).stdout.strip()
    with open(f"/proc/{pid}/status") as f:
        init = _status(f.read())
    out = docker(berthd, "exec", c, "cat", "/proc/self/status").stdout
    assert _status(out) == init
    # as runc leaves them (the container's init may inherit an ignored signal from conmon)
    assert "SigIgn:\t0000000000000000" in out and "SigBlk:\t0000000000000000" in out
    for ns in ("mnt", "net", "pid", "ipc", "uts", "cgroup"):
        want = os.readlink(f"/proc/{pid}/ns/{ns}")
        got = docker(berthd, "exec", c, "readlink", f"/proc/self/ns/{ns}").stdout.strip()
        assert got == want, ns
    with open(f"/proc/{pid}/cgroup") as f:
        cgroups = f.read()
    v1 = [line for line in cgroups.splitlines() if not line.startswith("0::")]
    now = docker(berthd, "exec", c, "cat", "/proc/self/cgroup").stdout
    assert [line for line in now.splitlines() if not line.startswith("0::")] == v1  # from the start
    # a hybrid host's v2 side mount (no controllers) is joined right after the exec
    assert docker(berthd, "exec", c, "sh", "-c", "sleep 0.5; cat /proc/self/cgroup").stdout == cgroups


def test_exec_user_env_cwd_limits_stdin_and_exit(berthd: Daemon, box) -> None:  # type: ignore[no-untyped-def]
    c = box("--ulimit", "nofile=1234:2345", "-e", "FROM_RUN=1")
    out = docker(berthd, "exec", "-u", "nobody", "-w", "/tmp", "-e", "X=y", c, "sh", "-c",
                 "id -u; pwd; echo $X $FROM_RUN $HOME; ulimit -n; ulimit -Hn").stdout.split()
    assert out == ["65534", "/tmp", "y", "1", "/home", "1234", "2345"]
    piped = docker(berthd, "exec", "-i", c, "sh", "-c", "cat; echo done >&2", input=b"from stdin\n")
    assert piped.stdout == "from stdin\n" and "done" in piped.stderr
    assert docker(berthd, "exec", c, "sh", "-c", "exit 7", check=False).returncode == 7
    missing = docker(berthd, "exec", c, "nosuchcmd", check=False)
    assert missing.returncode == 126
    assert 'exec: "nosuchcmd": executable file not found in $PATH' in missing.stdout + missing.stderr
    bad_cwd = docker(berthd, "exec", "-w", "/nonexistent", c, "true", check=False)
    assert bad_cwd.returncode == 126 and "/nonexistent" in bad_cwd.stdout + bad_cwd.stderr
    # killed by a signal: 128 + the signal, as docker reports it
    assert docker(berthd, "exec", c, "sh", "-c", "kill -9 $$", check=False).returncode == 137


def test_exec_inspect_pid_is_the_process(berthd: Daemon, box) -> None:  # type: ignore[no-untyped-def]
    c = box()
    eid = berthd.json("POST", f"/containers/{c}/exec", {"Cmd": ["sleep", "30"]})["Id"]  # type: ignore[index]
    status, _ = berthd.request("POST", f"/exec/{eid}/start", {"Detach": True})
    assert status == 200
    deadline = time.monotonic() + 10
    while not (info := berthd.json("GET", f"/exec/{eid}/json"))["Pid"]:  # type: ignore[index]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert info["Running"]  # type: ignore[index]
    with open(f"/proc/{info['Pid']}/cmdline", "rb") as f:  # type: ignore[index]
        assert f.read().split(b"\0")[:2] == [b"sleep", b"30"]
    os.kill(info["Pid"], signal.SIGTERM)  # type: ignore[index]
    while (info := berthd.json("GET", f"/exec/{eid}/json"))["Running"]:  # type: ignore[index]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert info["ExitCode"] == 143  # type: ignore[index]


def test_runtime_takes_over_when_the_launcher_cannot(berthd: Daemon, box, tmp_path) -> None:  # type: ignore[no-untyped-def]
    profile = tmp_path / "seccomp.json"
    profile.write_text('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"],'
                       ' "action": "SCMP_ACT_ERRNO"}]}')
    custom = box("--security-opt", f"seccomp={profile}")
    out = docker(berthd, "exec", custom, "mkdir", "/tmp/x", check=False)
    assert out.returncode != 0 and "Operation not permitted" in out.stderr
    plain = box()
    first = _launcher_pid(berthd)
    os.kill(first, signal.SIGKILL)
    time.sleep(0.2)
    assert docker(berthd, "exec", plain, "echo", "still works").stdout == "still works\n"
    assert _launcher_pid(berthd) != first  # a new launcher serves the execs


def test_tty_exec_gets_a_terminal_of_the_container(dockerpy) -> None:  # type: ignore[no-untyped-def]
    """`exec -t` through the launcher: one pty, from the container's devpts, owned by the exec's
    user and its controlling terminal; its output converted (LF -> CRLF) exactly once."""
    c = dockerpy.containers.run("busybox", ["sleep", "300"], detach=True, name=f"exl-{uuid.uuid4().hex[:8]}")
    try:
        for _ in range(5):
            code, out = c.exec_run(["sh", "-c", "tty; stat -c %U $(tty); test -t 0 && echo yes"], tty=True,
                                   user="nobody")
            assert code == 0
            assert b"\r\r" not in out
            lines = out.decode().split("\r\n")
            assert lines[0].startswith("/dev/pts/") and lines[1:3] == ["nobody", "yes"], out
    finally:
        c.remove(force=True)
