"""berth's own `run`/`create` with docker's resource, security, namespace and DNS flags, against the
test berthd: the create body lands in HostConfig/Config as docker's would, and the container
feels it (cgroup limits, rlimits, capabilities, /etc/hosts, the host's PID namespace, seccomp).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Daemon

from .test_cli import IMAGE, Berth


@pytest.fixture(scope="module")
def b(daemon_host: str) -> Iterator[Berth]:
    berth = Berth(daemon_host)
    yield berth
    berth.cleanup()


def _inspect(berthd: Daemon, name: str) -> dict:
    out = berthd.json("GET", f"/containers/{name}/json")
    assert isinstance(out, dict)
    return out


def test_create_maps_flags_to_the_body(b: Berth, berthd: Daemon, tmp_path: Path) -> None:
    labels = tmp_path / "labels"
    labels.write_text("# comment\na=1\n\nb=two\n")
    profile = tmp_path / "seccomp.json"
    profile.write_text('{\n  "defaultAction": "SCMP_ACT_ALLOW"\n}\n')
    cidfile = tmp_path / "cid"
    name = b.name("body")
    cid = b.ok("create", "--name", name, "-m", "64m", "--memory-swap", "128M", "--memory-reservation", "32mb",
               "--memory-swappiness", "10", "--oom-kill-disable", "--oom-score-adj", "100", "-c", "512",
               "--cpu-period", "100000", "--cpu-quota", "50000", "--cpuset-cpus", "0", "--blkio-weight", "300",
               "--pids-limit", "50", "--shm-size", "1g", "--ulimit", "nofile=1024:2048", "--ulimit", "nproc=100",
               "--cap-add", "net_admin", "--cap-drop", "CHOWN", "--security-opt", f"seccomp={profile}",
               "--security-opt", "no-new-privileges", "--read-only", "--group-add", "10",
               "--dns", "1.1.1.1", "--dns-search", "example.com", "--dns-option", "ndots:2",
               "--add-host", "foo:1.2.3.4", "--add-host", "bar=[::1]", "--domainname", "ex.org",
               "--ipc", "shareable", "--uts", "host", "--label-file", str(labels), "-l", "c=3",
               "--cidfile", str(cidfile), "--device-cgroup-rule", "c 1:3 mr", "--rm=false", IMAGE, "true").strip()
    assert cidfile.read_text() == cid
    info = _inspect(berthd, name)
    hc, cfg = info["HostConfig"], info["Config"]
    assert (hc["Memory"], hc["MemorySwap"], hc["MemoryReservation"]) == (64 << 20, 128 << 20, 32 << 20)
    assert (hc["MemorySwappiness"], hc["OomKillDisable"], hc["OomScoreAdj"]) == (10, True, 100)
    assert (hc["CpuShares"], hc["CpuPeriod"], hc["CpuQuota"], hc["CpusetCpus"]) == (512, 100000, 50000, "0")
    assert (hc["BlkioWeight"], hc["PidsLimit"], hc["ShmSize"]) == (300, 50, 1 << 30)
    assert hc["Ulimits"] == [{"Name": "nofile", "Hard": 2048, "Soft": 1024},
                             {"Name": "nproc", "Hard": 100, "Soft": 100}]
    assert (hc["CapAdd"], hc["CapDrop"]) == (["CAP_NET_ADMIN"], ["CAP_CHOWN"])
    assert hc["SecurityOpt"] == ['seccomp={"defaultAction":"SCMP_ACT_ALLOW"}', "no-new-privileges"]
    assert hc["ReadonlyRootfs"] is True and hc["GroupAdd"] == ["10"]
    assert (hc["Dns"], hc["DnsSearch"], hc["DnsOptions"]) == (["1.1.1.1"], ["example.com"], ["ndots:2"])
    assert hc["ExtraHosts"] == ["foo:1.2.3.4", "bar:::1"]
    assert (hc["IpcMode"], hc["UTSMode"]) == ("shareable", "host")
    assert hc["ContainerIDFile"] == str(cidfile) and hc["DeviceCgroupRules"] == ["c 1:3 mr"]
    assert cfg["Domainname"] == "ex.org"
    assert {k: cfg["Labels"].get(k) for k in "abc"} == {"a": "1", "b": "two", "c": "3"}
    # docker's create attaches the output streams in the body, as run does
    assert (cfg["AttachStdout"], cfg["AttachStderr"]) == (True, True)


def test_the_container_feels_the_flags(b: Berth, tmp_path: Path) -> None:
    deny_mkdir = tmp_path / "deny.json"
    deny_mkdir.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}))
    script = ("cd /sys/fs/cgroup; cat memory/memory.limit_in_bytes pids/pids.max; ulimit -Sn; ulimit -Hn; "
              "grep CapEff /proc/self/status; grep foo /etc/hosts; echo pid=$$; "
              "mkdir /tmp/d 2>/dev/null && echo mkdir-ok || echo mkdir-denied; "
              "touch /x 2>/dev/null && echo rw || echo ro; grep NoNewPrivs /proc/self/status")
    out = b.ok("run", "--rm", "-m", "64m", "--pids-limit", "50", "--ulimit", "nofile=1024:2048",
               "--cap-add", "NET_ADMIN", "--cap-drop", "chown", "--add-host", "foo:1.2.3.4", "--pid", "host",
               "--security-opt", f"seccomp={deny_mkdir}", "--security-opt", "no-new-privileges", "--read-only",
               IMAGE, "sh", "-c", script)
    lines = out.split("\n")
    assert lines[:4] == [str(64 << 20), "50", "1024", "2048"], out
    caps = int(lines[4].split()[1], 16)
    assert caps & (1 << 12) and not caps & 1, out  # CAP_NET_ADMIN added, CAP_CHOWN dropped
    assert lines[5].split() == ["1.2.3.4", "foo"]
    assert lines[6] != "pid=1", out  # the host's PID namespace: the shell is not its init
    assert lines[7:10] == ["mkdir-denied", "ro", "NoNewPrivs:\t1"], out
    unconfined = b.ok("run", "--rm", "--security-opt", "seccomp=unconfined", "--pid=host", IMAGE,
                      "grep", "Seccomp:", "/proc/self/status")
    assert unconfined.split() == ["Seccomp:", "0"]


def test_bad_values_are_refused_before_the_daemon(b: Berth) -> None:
    for args, message in (
        (["-m", "1x"], 'invalid argument "1x" for "-m, --memory" flag: invalid suffix: \'x\''),
        (["--ulimit", "nofile=2048:1024"], "ulimit soft limit must be less than or equal to hard limit: 2048 > 1024"),
        (["--add-host", "foo"], 'invalid argument "foo" for "--add-host" flag: bad format for add-host: "foo"'),
        (["--security-opt", "bogus"], 'berth: Invalid --security-opt: "bogus"'),
        (["--pid", "bogus"], "berth: --pid: invalid PID mode"),
        (["--pull", "sometimes"], "berth: invalid pull option: 'sometimes'"),
        (["--gpus", "all"], "berth: --gpus: could not select device driver"),
        (["--rm=maybe"], 'invalid argument "maybe" for "--rm" flag'),
    ):
        result = b("run", *args, IMAGE, "true")
        assert result.returncode == 125, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)


def test_pull_never_quiet_and_cidfile_cleanup(b: Berth, tmp_path: Path) -> None:
    missing = f"clitest-absent-{uuid.uuid4().hex[:8]}"
    cidfile = tmp_path / "cid"
    never = b("run", "--pull", "never", "--cidfile", str(cidfile), missing)
    assert never.returncode == 125
    assert "Unable to find image" not in never.stderr  # never: no pull attempt, as docker
    assert f"No such image: {missing}:latest" in never.stderr
    assert not cidfile.exists()  # claimed for the create, released when it failed
    quiet = b("create", "-q", missing)
    assert quiet.returncode == 1 and "Unable to find image" not in quiet.stderr
    cidfile.write_text("taken")
    taken = b("run", "--cidfile", str(cidfile), IMAGE, "true")
    assert taken.returncode == 125 and "container ID file found" in taken.stderr
    assert cidfile.read_text() == "taken"
    refused = b("create", "--storage-opt", "size=1G", IMAGE)  # passed on: the daemon says why not
    assert refused.returncode == 1 and "Error response from daemon: --storage-opt" in refused.stderr


def test_network_alias_and_link_on_a_user_network(b: Berth) -> None:
    net = f"clitest-net-{os.urandom(3).hex()}"
    b.ok("network", "create", net)
    try:
        server = b.name("srv")
        b.ok("run", "-d", "--name", server, "--network", net, IMAGE, "sleep", "30")
        out = b.ok("run", "--rm", "--network", net, "--network-alias", "me", "--link", f"{server}:db",
                   IMAGE, "sh", "-c", "ping -c1 -W2 db >/dev/null && echo db-ok; ping -c1 -W2 me >/dev/null && echo me-ok")
        assert out.split() == ["db-ok", "me-ok"]
        b.ok("rm", "-f", server)
    finally:
        b("network", "rm", net)
