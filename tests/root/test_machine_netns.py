"""`berth machine` with the netns driver, end to end: three machines from a machines.yml, each a
network namespace on a shared switch with a berthd of its own, checked with the real docker CLI.

Names carry a per-run tag and the state lives in a fresh directory under /tmp; `finally` blocks
take away whatever a failure left, and the host's namespaces, links, mounts and processes are
compared with what they were before.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from berth.machine.netns import NetnsDriver

from ..conftest import busybox_tar, docker_cli

pytestmark = pytest.mark.root

DOCKER = docker_cli()


def machines_yml(tag: str, net: int, web2_type: str = "frontend") -> str:
    return f"""\
defaults:
  driver: netns
  engine:
    labels:
      run: "${{RUN_TAG}}"
machines:
  web-1-{tag}:
    address: 10.250.{net}.11/24
    engine:
      labels: [type=frontend]
  web-2-{tag}:
    address: 10.250.{net}.12/24
    engine:
      labels: [type={web2_type}]
  db-1-{tag}:
    address: 10.250.{net}.13/24
    engine:
      labels: {{type: db}}
"""


def netns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def host_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def mounts_under(*roots: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if any(r in p for r in roots)]


def pids_mentioning(text: str) -> list[int]:
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    out.append(int(pid))
        except OSError:
            pass
    return out


@pytest.mark.skipif(os.geteuid() != 0 or DOCKER is None or shutil.which("nsenter") is None,
                    reason="needs root, nsenter and the docker CLI")
def test_three_netns_machines_apply_relabel_and_remove() -> None:
    tag = uuid.uuid4().hex[:6]
    net = int(tag[:2], 16)
    work = tempfile.mkdtemp(prefix="bmw-", dir="/tmp")
    state = tempfile.mkdtemp(prefix="bms-", dir="/tmp")
    switch = NetnsDriver(state).switch
    names = [f"web-1-{tag}", f"web-2-{tag}", f"db-1-{tag}"]
    yml = Path(work, "machines.yml")
    yml.write_text(machines_yml(tag, net))
    Path(work, ".env").write_text(f"RUN_TAG={tag}\n")
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    env_names, links_before = netns_names(), host_links()

    def machine(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "berth.cli.main", "machine", "--state-dir", state,
                               "-f", str(yml), *args], capture_output=True, text=True, env=env, timeout=180,
                              cwd=work)
        if check:
            assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc

    def docker(url: str, *args: str) -> str:
        assert DOCKER is not None
        proc = subprocess.run([DOCKER, "-H", url, *args], capture_output=True, text=True, env=env, timeout=60)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc.stdout

    def inspect(name: str) -> dict:
        (out,) = json.loads(machine("inspect", name).stdout)
        return out  # type: ignore[no-any-return]

    def daemon_pid(name: str) -> int:
        return int(Path(inspect(name)["Details"]["pidfile"]).read_text())

    try:
        out = machine("plan").stdout
        assert out.count("\n+ ") + out.startswith("+ ") == 3, out
        out = machine("apply").stdout
        assert "Apply: 3 done, 0 failed." in out, out

        ls = machine("ls").stdout.splitlines()
        assert ls[0].split()[:4] == ["NAME", "DRIVER", "STATE", "URL"]
        rows = {line.split()[0]: line.split() for line in ls[1:]}
        assert set(rows) == set(names) and all(rows[n][1:3] == ["netns", "running"] for n in names), ls

        urls = {n: machine("url", n).stdout.strip() for n in names}
        want = {names[0]: "type=frontend", names[1]: "type=frontend", names[2]: "type=db"}
        for n in names:
            labels = json.loads(docker(urls[n], "info", "--format", "{{json .Labels}}"))
            assert sorted(labels) == sorted([f"run={tag}", want[n]]), (n, labels)
        # `eval $(berth machine env NAME)` points the docker CLI at it
        lines = machine("env", "--shell", "bash", names[0]).stdout.splitlines()
        assert f'export DOCKER_HOST="{urls[names[0]]}"' in lines
        assert docker(urls[names[0]], "ps", "--format", "{{.ID}}") == ""
        # the machines reach each other over the switch, on the engines' TCP listener
        db_ip = machine("ip", names[2]).stdout.strip()
        assert db_ip == f"10.250.{net}.13"
        far = machine("ssh", names[0], "--", DOCKER or "docker", "-H", f"tcp://{db_ip}:2375", "info", "--format",
                      "{{json .Labels}}").stdout
        assert "type=db" in json.loads(far)

        pids = {n: daemon_pid(n) for n in names}
        out = machine("apply").stdout
        assert "No changes" in out and "Apply:" not in out, out
        assert {n: daemon_pid(n) for n in names} == pids

        # one label edited: one `~`, applied by a reload, not a restart
        yml.write_text(machines_yml(tag, net, web2_type="backend"))
        plan_lines = [line for line in machine("plan").stdout.splitlines() if line[:1] in "+~-"]
        assert plan_lines == [f"~ {names[1]} (netns): labels type=frontend->backend (reload)"], plan_lines
        assert "Apply: 1 done, 0 failed." in machine("apply").stdout
        labels = json.loads(docker(urls[names[1]], "info", "--format", "{{json .Labels}}"))
        assert sorted(labels) == ["run=" + tag, "type=backend"]
        assert {n: daemon_pid(n) for n in names} == pids
        assert "No changes" in machine("plan").stdout

        # a machine with a running container is removed without a trace
        docker(urls[names[1]], "load", "-i", str(busybox_tar()))
        cid = docker(urls[names[1]], "run", "-d", "busybox", "sleep", "600").strip()
        details = inspect(names[1])["Details"]
        machine("rm", names[1])
        assert f"berth-{names[1]}" not in netns_names()
        assert not mounts_under(details["data_root"], details["exec_root"])
        assert not os.path.exists(details["data_root"])
        assert not pids_mentioning(details["data_root"])
        assert not [c for c in Path("/sys/fs/cgroup").glob(f"*/*/{cid}*")], "a container cgroup was left"
        assert names[1] not in machine("ls", "-q").stdout.split()

        machine("rm", names[0], names[2])
        assert netns_names() - env_names == set()
        assert not [link for link in host_links() - links_before if link.startswith(("mv", "mb"))]
        assert not mounts_under(state)
        assert not pids_mentioning(state)
        assert machine("ls", "-q").stdout.strip() == ""
    finally:
        machine("rm", "--force", *names, check=False)
        for pid in pids_mentioning(state):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in sorted(mounts_under(state), key=len, reverse=True):
            subprocess.run(["umount", "-l", p], check=False)
        for ns in [*(f"berth-{n}" for n in names), switch]:
            if ns in netns_names():
                subprocess.run(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
