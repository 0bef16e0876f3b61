"""`berth machine` with the ssh driver, end to end, against a real sshd (Debian openssh-server) in
a network namespace of its own, next to a netns machine.

The "remote" host shares this host's filesystem and kernel: berthd is found at the same path as
this berth's (no wheel is installed), and everything of the ssh machine lives under its
`install_dir` in this test's temp directory. Its sshd gives logins a PATH without sbin and with the
machine's `bin/` first, where the driver writes `docker` (berth) for ssh:// clients; the local
`ssh` the docker CLI runs is a wrapper with the test key, standing for a user's ~/.ssh/config.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from berth.machine.model import MachineError, MachineSpec
from berth.machine.netns import NetnsDriver
from berth.machine.ssh import SSHDriver

from ..conftest import busybox_tar, docker_cli
from .test_machine_netns import mounts_under, netns_names, pids_mentioning

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0 or docker_cli() is None or not os.path.exists("/usr/sbin/sshd")
                       or shutil.which("ssh") is None or shutil.which("nsenter") is None,
                       reason="needs root, sshd and ssh (openssh), nsenter and the docker CLI"),
]

DOCKER = docker_cli() or "docker"


@dataclass
class SSHHost:
    tag: str
    dir: str
    netns: str
    address: str
    key: str
    wrong_key: str
    install_dir: str


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30)


@contextmanager
def sshd_in_netns() -> Iterator[SSHHost]:
    """A real sshd in a netns of its own, reached over a veth, with an authorized and a wrong key."""
    tag = uuid.uuid4().hex[:6]
    net = int(tag[:2], 16)
    d = tempfile.mkdtemp(prefix=f"bsh-{tag}-", dir="/tmp")
    ns, veth, addr = f"bsh-{tag}", f"bsh{tag}", f"10.251.{net}.2"
    host = SSHHost(tag, d, ns, addr, f"{d}/key", f"{d}/wrong", f"{d}/far")
    for name in ("hostkey", "key", "wrong"):
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{d}/{name}")
    shutil.copy(f"{d}/key.pub", f"{d}/authorized_keys")
    Path(d, "sshd_config").write_text(f"""\
ListenAddress {addr}
HostKey {d}/hostkey
PidFile {d}/sshd.pid
AuthorizedKeysFile {d}/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
SetEnv PATH={host.install_dir}/bin:/usr/local/bin:/usr/bin:/bin
Subsystem sftp /usr/lib/openssh/sftp-server
""")
    sshd: subprocess.Popen[bytes] | None = None
    try:
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation directory
        _run("ip", "netns", "add", ns)
        _run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _run("ip", "addr", "add", f"10.251.{net}.1/30", "dev", veth)
        _run("ip", "link", "set", veth, "up")
        _run("ip", "-n", ns, "addr", "add", f"{addr}/30", "dev", "eth0")
        _run("ip", "-n", ns, "link", "set", "eth0", "up")
        _run("ip", "-n", ns, "link", "set", "lo", "up")
        sshd = subprocess.Popen(["nsenter", f"--net=/run/netns/{ns}", "/usr/sbin/sshd", "-D", "-f", f"{d}/sshd_config",
                                 "-E", f"{d}/sshd.log"], stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((addr, 22), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, Path(d, "sshd.log").read_text()
                time.sleep(0.05)
        yield host
    finally:
        if sshd is not None:
            sshd.terminate()
            sshd.wait(10)
        if os.path.exists(f"/run/netns/{ns}"):
            for pid in _run("ip", "netns", "pids", ns).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            subprocess.run(["ip", "netns", "del", ns], check=False)
        for pid in pids_mentioning(d):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in sorted(mounts_under(d), key=len, reverse=True):
            subprocess.run(["umount", "-l", p], check=False)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def ssh_host() -> Iterator[SSHHost]:
    with sshd_in_netns() as host:
        yield host


def test_wrong_key_fails_at_connect_quickly(ssh_host: SSHHost) -> None:
    state = tempfile.mkdtemp(prefix="bms-", dir=ssh_host.dir)
    spec = MachineSpec(f"bad-{ssh_host.tag}", "ssh", {"host": ssh_host.address, "identity_file": ssh_host.wrong_key,
                                                      "install_dir": f"{ssh_host.dir}/bad"})
    started = time.monotonic()
    with pytest.raises(MachineError) as e:
        SSHDriver(state).create(spec)
    assert time.monotonic() - started < 15
    assert (e.value.machine, e.value.phase) == (spec.name, "connect")
    assert "Permission denied" in e.value.message and ssh_host.address in e.value.message
    assert os.listdir(state) == [] and not os.path.exists(f"{ssh_host.dir}/bad")


def test_ssh_machine_with_a_netns_machine(ssh_host: SSHHost) -> None:
    tag, addr = ssh_host.tag, ssh_host.address
    far, near, bad = f"far-{tag}", f"near-{tag}", f"bad-{tag}"
    net = int(tag[:2], 16)
    work = Path(ssh_host.dir, "work")
    work.mkdir()
    state = f"{ssh_host.dir}/state"
    yml = work / "machines.yml"
    machines = f"""\
machines:
  {far}:
    driver: ssh
    host: {addr}
    identity_file: ${{SSH_KEY}}
    install_dir: {ssh_host.install_dir}
    engine:
      labels: {{type: far}}
      options: {{default-pool: "10.247.0.0/20,size=24"}}
  {near}:
    driver: netns
    address: 10.246.{net}.11/24
    engine:
      labels: [type=near]
"""
    yml.write_text(machines + f"""\
  {bad}:
    driver: ssh
    host: {addr}
    user: root
    identity_file: ${{WRONG_KEY:-${{SSH_KEY}}}}
    install_dir: {ssh_host.dir}/bad
""")
    # the docker CLI runs `ssh` from PATH: this one knows the key and the machine's host key
    wrapper = Path(ssh_host.dir, "bin")
    wrapper.mkdir()
    (wrapper / "ssh").write_text(f"#!/bin/sh\nexec /usr/bin/ssh -o BatchMode=yes -o IdentitiesOnly=yes "
                                 f"-i {ssh_host.key} -o UserKnownHostsFile={state}/{far}/known_hosts \"$@\"\n")
    (wrapper / "ssh").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    env.update(SSH_KEY=ssh_host.key, WRONG_KEY=ssh_host.wrong_key, DOCKER_CONFIG=f"{ssh_host.dir}/docker-config")
    client_env = {**env, "PATH": f"{wrapper}:{os.environ['PATH']}"}  # the driver itself uses the plain ssh
    links_before = set(_run("ip", "-n", ssh_host.netns, "-o", "link").stdout.splitlines())
    switch = NetnsDriver(state).switch

    def machine(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "berth.cli.main", "machine", "--state-dir", state,
                               "-f", str(yml), *args], capture_output=True, text=True, env=env, timeout=120,
                              cwd=work)
        if check:
            assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc

    def docker(*args: str) -> str:
        proc = subprocess.run([DOCKER, *args], capture_output=True, text=True, env=client_env, timeout=60)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc.stdout

    try:
        # one machine's wrong key fails at connect, naming it; the other two are applied
        out = machine("apply", check=False)
        assert out.returncode == 1
        assert f"+ {far}: created" in out.stdout and f"+ {near}: created" in out.stdout, out
        assert f"error: {bad}: connect: ssh root@{addr}:22: " in out.stderr and "Permission denied" in out.stderr
        rows = {line.split()[0]: line.split() for line in machine("ls").stdout.splitlines()[1:]}
        assert rows[far][1:3] == ["ssh", "running"] and rows[near][1:3] == ["netns", "running"], rows
        assert bad not in rows

        sock = f"{ssh_host.install_dir}/run/berth.sock"
        assert machine("url", far).stdout.strip() == f"ssh://root@{addr}{sock}"
        assert machine("ssh", far, "--", "uname", "-r").stdout.strip() == os.uname().release

        # the docker CLI's own ssh:// (`docker system dial-stdio` there is berth's)
        labels = docker("-H", f"ssh://root@{addr}", "info", "--format", "{{json .Labels}}")
        assert json.loads(labels) == ["type=far"]
        env_lines = machine("env", "--shell", "bash", far).stdout.splitlines()
        assert f'export DOCKER_HOST="ssh://root@{addr}{sock}"' in env_lines
        url = f"ssh://root@{addr}{sock}"
        docker("-H", url, "load", "-i", str(busybox_tar()))
        cid = docker("-H", url, "run", "-d", "busybox", "sleep", "600").strip()
        # berth's own client speaks ssh:// too
        proc = subprocess.run([sys.executable, "-m", "berth.cli.main", "ps", "-q", "--no-trunc"], capture_output=True,
                              text=True, env={**client_env, "DOCKER_HOST": url}, timeout=60)
        assert proc.stdout.split() == [cid], proc
        assert machine("context", far).stdout.strip() == far
        assert json.loads(docker("--context", far, "info", "--format", "{{json .Labels}}")) == ["type=far"]

        # scp puts a file on the machine (whose filesystem is this one)
        Path(work, "hello.txt").write_text("hi\n")
        machine("scp", str(work / "hello.txt"), f"{far}:{ssh_host.install_dir}/hello.txt")
        assert Path(ssh_host.install_dir, "hello.txt").read_text() == "hi\n"
        os.unlink(Path(ssh_host.install_dir, "hello.txt"))

        # without the bad machine, a second apply does nothing and restarts nothing
        yml.write_text(machines)
        pid = Path(ssh_host.install_dir, "berthd.pid").read_text()
        out = machine("apply")
        assert "No changes" in out.stdout and "Apply:" not in out.stdout, out
        assert Path(ssh_host.install_dir, "berthd.pid").read_text() == pid
        # another key file: the machine is reached the new way, never replaced (its engine untouched)
        shutil.copy(ssh_host.key, f"{ssh_host.dir}/key2")
        env["SSH_KEY"] = f"{ssh_host.dir}/key2"
        plan_lines = [line for line in machine("plan").stdout.splitlines() if line[:1] in "+~-"]
        assert plan_lines == [f"~ {far} (ssh): identity_file: '{ssh_host.key}' -> '{ssh_host.dir}/key2'; "
                              "reconnect (the engine is untouched)"], plan_lines
        assert "Apply: 1 done, 0 failed." in machine("apply").stdout
        assert Path(ssh_host.install_dir, "berthd.pid").read_text() == pid
        assert "No changes" in machine("plan").stdout

        # rm takes away the engine, its container, mounts, bridge, chains and files
        machine("rm", far)
        assert not os.path.exists(ssh_host.install_dir)
        assert not mounts_under(ssh_host.install_dir)
        assert not pids_mentioning(ssh_host.install_dir)
        assert not [c for c in Path("/sys/fs/cgroup").glob(f"*/*/{cid}*")], "a container cgroup was left"
        assert set(_run("ip", "-n", ssh_host.netns, "-o", "link").stdout.splitlines()) == links_before
        chains = subprocess.run(["nsenter", f"--net=/run/netns/{ssh_host.netns}", "iptables-save"],
                                capture_output=True, text=True).stdout
        assert ":BERTH-" not in chains
        machine("context", "--rm", far)

        # an engine that runs already (not started by berth machine) is adopted as it is, and left by rm
        foreign = f"{ssh_host.dir}/foreign"
        os.makedirs(f"{foreign}/run")
        berthd = os.path.join(os.path.dirname(sys.executable), "berthd")
        with open(f"{foreign}/log", "wb") as log:
            engine = subprocess.Popen(["nsenter", f"--net=/run/netns/{ssh_host.netns}", berthd, "-H",
                                       f"unix://{foreign}/run/berth.sock", "--data-root", f"{foreign}/data",
                                       "--exec-root", f"{foreign}/run", "--bridge-name", f"bf{tag}",
                                       "--iptables-prefix", f"BF{tag}", "--default-pool", "10.248.0.0/20,size=24",
                                       "--label", "type=foreign"], stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        try:
            yml.write_text(f"""\
machines:
  adopt-{tag}:
    driver: ssh
    host: {addr}
    identity_file: ${{SSH_KEY}}
    install_dir: {foreign}
    engine:
      labels: {{type: foreign}}
""")
            deadline = time.monotonic() + 30
            while not os.path.exists(f"{foreign}/run/berth.sock"):
                assert engine.poll() is None and time.monotonic() < deadline, Path(foreign, "log").read_text()
                time.sleep(0.1)
            time.sleep(0.3)
            assert f"+ adopt-{tag}: created" in machine("apply").stdout
            (details,) = json.loads(machine("inspect", f"adopt-{tag}").stdout)
            assert details["Details"]["adopted"] is True and details["State"] == "running"
            assert "adopted" in machine("stop", f"adopt-{tag}", check=False).stderr
            machine("rm", f"adopt-{tag}")
            assert engine.poll() is None and os.path.isdir(f"{foreign}/data")
        finally:
            engine.terminate()
            engine.wait(15)
            subprocess.run(["ip", "-n", ssh_host.netns, "link", "del", f"bf{tag}"], capture_output=True)
        machine("rm", near)
        assert machine("ls", "-q").stdout.strip() == ""
        assert f"berth-{near}" not in netns_names() and switch not in netns_names()
    finally:
        machine("rm", "--force", far, near, check=False)
        for ns in (f"berth-{near}", switch):
            if ns in netns_names():
                subprocess.run(["ip", "netns", "del", ns], check=False)
