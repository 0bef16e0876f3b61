"""Networking through the real docker CLI: user-defined networks, isolation, published ports,
cleanup, and ports that outlive a `kill -9` of berthd.

Each test daemon has its own bridge name, chain prefix and address pool (tests/conftest.py), so
what is checked on the host (links, iptables) is this daemon's alone.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable

import pytest

from ..conftest import Daemon
from .test_docker_cli import DOCKER, docker

pytestmark = [
    pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
]

GET = r"printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 {ip} 80"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http(port: int, timeout: float = 3) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=timeout) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:  # busybox httpd answers 404 for an empty directory
        return int(e.code)


def _wait_http(port: int, deadline: float = 5) -> int:
    end = time.time() + deadline
    while True:
        try:
            return _http(port)
        except OSError:
            if time.time() > end:
                raise
            time.sleep(0.1)


def _ip(d: Daemon, name: str, network: str) -> str:
    out = docker(d, "inspect", "-f", f"{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}", name)
    return out.stdout.strip()


def _reaches(d: Daemon, network: str, ip: str) -> bool:
    out = docker(d, "run", "--rm", "--network", network, "busybox", "sh", "-c", GET.format(ip=ip), check=False)
    return "HTTP/1." in out.stdout


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex[:8]


def test_user_networks_reach_and_isolate(berthd: Daemon, tag: str) -> None:
    a, b, closed = f"na-{tag}", f"nb-{tag}", f"nc-{tag}"
    made: list[str] = []
    started = time.time() - 1
    try:
        docker(berthd, "network", "create", "--label", "t=1", a)
        docker(berthd, "network", "create", b)
        docker(berthd, "network", "create", "-o", "com.docker.network.bridge.enable_icc=false", closed)
        for net in (a, b, closed):
            docker(berthd, "run", "-d", "--name", f"web-{net}", "--network", net, "busybox", "httpd", "-f", "-p", "80")
            made.append(f"web-{net}")
        ip_a = _ip(berthd, f"web-{a}", a)
        assert ip_a
        assert _reaches(berthd, a, ip_a)  # same network
        assert not _reaches(berthd, b, ip_a)  # another network
        assert not _reaches(berthd, closed, _ip(berthd, f"web-{closed}", closed))  # icc off
        info = json.loads(docker(berthd, "network", "inspect", a).stdout)[0]
        assert info["Labels"] == {"t": "1"} and info["Driver"] == "bridge"
        assert any(c["Name"] == f"web-{a}" for c in info["Containers"].values())
        hosts = docker(berthd, "exec", f"web-{a}", "cat", "/etc/hosts").stdout
        assert ip_a in hosts
        rm = docker(berthd, "network", "rm", a, check=False)
        assert rm.returncode != 0 and "active endpoints" in rm.stderr
        # connect a running container to a second network
        docker(berthd, "network", "connect", b, f"web-{a}")
        ip_b = _ip(berthd, f"web-{a}", b)
        assert ip_b and _reaches(berthd, b, ip_b)
        docker(berthd, "network", "disconnect", b, f"web-{a}")
        assert not _reaches(berthd, b, ip_b)
        events = docker(berthd, "events", "--since", str(int(started)), "--until", str(int(time.time()) + 1),
                        "--filter", "type=network", "--filter", f"network={b}",
                        "--format", "{{.Action}}").stdout.split()
        assert events[0] == "create" and {"connect", "disconnect"} <= set(events), events
    finally:
        for name in made:
            docker(berthd, "rm", "-f", name, check=False)
        for net in (a, b, closed):
            docker(berthd, "network", "rm", net, check=False)


def test_fixed_ip_and_modes(berthd: Daemon, tag: str) -> None:
    net = f"fx-{tag}"
    sub = f"10.219.{int(tag[:2], 16)}"  # outside the test daemons' pools
    docker(berthd, "network", "create", "--subnet", f"{sub}.0/24", "--ip-range", f"{sub}.128/25", net)
    try:
        out = docker(berthd, "run", "--rm", "--network", net, "--ip", f"{sub}.9", "busybox", "ip", "-o", "-4",
                     "addr", "show", "eth0")
        assert f"{sub}.9/24" in out.stdout
        out = docker(berthd, "run", "--rm", "--network", net, "busybox", "ip", "-o", "-4", "addr", "show", "eth0")
        assert int(out.stdout.split(f"{sub}.")[1].split("/")[0]) >= 128
        none = docker(berthd, "run", "--rm", "--network", "none", "busybox", "ip", "-o", "link")
        assert "eth0" not in none.stdout
        default = docker(berthd, "run", "--rm", "busybox", "ip", "-o", "-4", "addr", "show", "eth0")
        assert "inet " in default.stdout
        bad = docker(berthd, "run", "--rm", "--network", f"nosuch-{tag}", "busybox", "true", check=False)
        assert bad.returncode == 125 and "not found" in bad.stderr
    finally:
        docker(berthd, "network", "rm", net, check=False)


def test_published_ports(berthd: Daemon, tag: str) -> None:
    port = _free_port()
    web, anyport, clash = f"pw-{tag}", f"pp-{tag}", f"pc-{tag}"
    try:
        docker(berthd, "run", "-d", "--name", web, "-p", f"127.0.0.1:{port}:80", "busybox", "httpd", "-f", "-p", "80")
        assert _wait_http(port) == 404
        assert docker(berthd, "port", web).stdout.strip() == f"80/tcp -> 127.0.0.1:{port}"
        ps = docker(berthd, "ps", "--filter", f"name={web}", "--format", "{{.Ports}}").stdout
        assert f"127.0.0.1:{port}->80/tcp" in ps
        out = docker(berthd, "run", "-d", "--name", clash, "-p", f"127.0.0.1:{port}:80", "busybox", "true",
                     check=False)
        assert out.returncode == 125 and "port is already allocated" in out.stderr, out.stderr
        assert docker(berthd, "inspect", "-f", "{{.State.Running}}", clash).stdout.strip() == "false"
        docker(berthd, "run", "-d", "--name", anyport, "--expose", "80", "-P", "busybox", "httpd", "-f", "-p", "80")
        mapped = docker(berthd, "port", anyport, "80").stdout.strip().splitlines()[0]
        host_port = int(mapped.rsplit(":", 1)[1])
        assert _wait_http(host_port) == 404
    finally:
        for name in (web, anyport, clash):
            docker(berthd, "rm", "-f", name, check=False)
    with socket.socket() as s:  # released with the container
        s.bind(("127.0.0.1", port))


def _links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout


def _rules(prefix: str) -> list[str]:
    out = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line.startswith(f"-A {prefix}-")]


def test_rm_and_prune_leave_nothing(fresh_berthd: Callable[..., Daemon]) -> None:
    d = fresh_berthd()
    port = _free_port()
    nid = docker(d, "network", "create", "cleanme").stdout.strip()
    cid = docker(d, "run", "-d", "--network", "cleanme", "-p", f"127.0.0.1:{port}:80", "busybox",
                 "httpd", "-f", "-p", "80").stdout.strip()
    cid2 = docker(d, "run", "-d", "busybox", "sleep", "1000").stdout.strip()
    bridge = f"br-{nid[:12]}"
    assert bridge in _links()
    assert any(str(port) in r for r in _rules(d.iptables_prefix))
    docker(d, "rm", "-f", cid, cid2)
    out = docker(d, "network", "prune", "-f").stdout
    assert "cleanme" in out
    from berth.network.model import host_ifname

    links = _links()
    assert bridge not in links
    assert host_ifname(cid, nid) not in links
    rules = _rules(d.iptables_prefix)
    assert not any(str(port) in r or bridge in r for r in rules), rules
    from berth.network.netns import SPARE  # the namespace made ahead for the next container

    assert not [f for f in os.listdir(os.path.join(d.root, "run", "netns")) if f != SPARE]


def test_ports_survive_kill9(fresh_berthd: Callable[..., Daemon]) -> None:
    d = fresh_berthd()
    port = _free_port()
    docker(d, "run", "-d", "--name", "survivor", "-p", f"127.0.0.1:{port}:80", "busybox", "httpd", "-f", "-p", "80")
    assert _wait_http(port) == 404
    d.kill9()
    assert _http(port) == 404  # the rules outlive the daemon
    d.start()
    assert _http(port) == 404
    clash = docker(d, "run", "-d", "-p", f"127.0.0.1:{port}:80", "busybox", "true", check=False)
    assert "port is already allocated" in clash.stderr  # held again by the new daemon
    assert docker(d, "port", "survivor").stdout.strip() == f"80/tcp -> 127.0.0.1:{port}"
    docker(d, "rm", "-f", "survivor")


def test_berth_cli_networks(berthd: Daemon, tag: str) -> None:
    """The berth CLI's own commands: network create/ls/inspect/connect/disconnect/rm/prune, -P, --ip, port."""
    from .test_cli import Berth

    b = Berth(berthd.host)
    net, ctr = f"cli-{tag}", b.name("web")
    sub = f"10.218.{int(tag[:2], 16)}"
    try:
        nid = b.ok("network", "create", "--subnet", f"{sub}.0/24", "--label", "k=v", net).strip()
        assert net in b.ok("network", "ls", "--format", "{{.Name}}").split()
        assert b.ok("network", "ls", "-q", "--filter", f"name={net}").strip() == nid[:12]
        assert json.loads(b.ok("network", "inspect", net))[0]["IPAM"]["Config"][0]["Subnet"] == f"{sub}.0/24"
        b.ok("run", "-d", "--name", ctr, "--network", net, "--ip", f"{sub}.77", "--expose", "80", "-P",
             "busybox", "httpd", "-f", "-p", "80")
        nets = json.loads(b.ok("inspect", ctr))[0]["NetworkSettings"]["Networks"]
        assert nets[net]["IPAddress"] == f"{sub}.77"
        mapped = b.ok("port", ctr, "80").strip().splitlines()[0]
        assert _wait_http(int(mapped.rsplit(":", 1)[1])) == 404
        b.ok("network", "connect", "bridge", ctr)
        assert set(json.loads(b.ok("inspect", ctr))[0]["NetworkSettings"]["Networks"]) == {net, "bridge"}
        b.ok("network", "disconnect", "bridge", ctr)
        assert b("network", "rm", net).returncode != 0
        b.ok("rm", "-f", ctr)
        assert net in b.ok("network", "prune", "-f")
        assert b("network", "inspect", net).returncode != 0
    finally:
        b.cleanup()
        b("network", "rm", "-f", net)


def test_connect_gives_a_running_container_the_builtin_dns(berthd: Daemon, tag: str) -> None:
    """A container started on the default bridge has the host's resolvers; connected to a
    user-defined network while it runs, it resolves that network's containers by name, as with
    dockerd (which rebuilds resolv.conf for the built-in DNS then)."""
    net, peer, late = f"nd-{tag}", f"peer-{tag}", f"late-{tag}"
    try:
        docker(berthd, "network", "create", net)
        docker(berthd, "run", "-d", "--name", peer, "--network", net, "busybox", "sleep", "100")
        docker(berthd, "run", "-d", "--name", late, "busybox", "sleep", "100")
        assert "127.0.0.11" not in docker(berthd, "exec", late, "cat", "/etc/resolv.conf").stdout
        docker(berthd, "network", "connect", net, late)
        assert "nameserver 127.0.0.11" in docker(berthd, "exec", late, "cat", "/etc/resolv.conf").stdout
        ip = _ip(berthd, peer, net)
        out = docker(berthd, "exec", late, "nslookup", peer).stdout
        assert ip in out, out
    finally:
        docker(berthd, "rm", "-f", peer, late, check=False)
        docker(berthd, "network", "rm", net, check=False)
