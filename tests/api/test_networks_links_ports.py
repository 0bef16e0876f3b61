"""Legacy links, port ranges, `network rm` under stopped containers and `--mac-address`, against
dockerd 20.10's observed behaviour, through the real docker CLI and the raw API."""

from __future__ import annotations

import json
import os
import socket
import uuid

import pytest

from ..conftest import Daemon
from .test_docker_cli import DOCKER, docker

pytestmark = [
    pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
]


def _free_range(n: int) -> int:
    """The first of `n` consecutive free ports on 127.0.0.1."""
    for base in range(31000 + int.from_bytes(os.urandom(2), "big") % 20000, 65000, 7):
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range")


def test_link_remove_and_hosts_follow_the_child(berthd: Daemon) -> None:
    tag = uuid.uuid4().hex[:6]
    db, web = f"ldb-{tag}", f"lweb-{tag}"
    try:
        docker(berthd, "run", "-d", "--name", db, "busybox", "sleep", "300")
        docker(berthd, "run", "-d", "--name", web, "--link", f"{db}:dbal", "busybox", "sleep", "300")
        line = [x for x in docker(berthd, "exec", web, "cat", "/etc/hosts").stdout.splitlines() if "dbal" in x]
        assert line and line[0].split()[0] == docker(berthd, "inspect", "-f", "{{.NetworkSettings.IPAddress}}",
                                                     db).stdout.strip()
        # the child gets a new address: the running parent's /etc/hosts follows (dockerd's parent update)
        docker(berthd, "network", "disconnect", "bridge", db)
        docker(berthd, "network", "connect", "bridge", db)
        new_ip = docker(berthd, "inspect", "-f", "{{.NetworkSettings.IPAddress}}", db).stdout.strip()
        assert new_ip != line[0].split()[0]
        hosts = docker(berthd, "exec", web, "cat", "/etc/hosts").stdout
        assert f"{new_ip}\tdbal " in hosts, hosts

        # `rm --link` without a parent is dockerd's 500, an unknown link a 404
        out = docker(berthd, "rm", "--link", web, check=False)
        assert out.returncode != 0 and "cannot remove the default link name" in out.stderr
        status, body = berthd.request("DELETE", f"/v1.41/containers/{web}/nosuch?link=1")
        assert status == 404 and b"No such container" in body
        docker(berthd, "rm", "--link", f"{web}/dbal")
        assert json.loads(docker(berthd, "inspect", web).stdout)[0]["HostConfig"]["Links"] is None
        assert "dbal" not in docker(berthd, "exec", web, "cat", "/etc/hosts").stdout
        running = docker(berthd, "ps", "--format", "{{.Names}}").stdout.split()
        assert db in running and web in running  # only the link went
    finally:
        docker(berthd, "rm", "-f", db, web, check=False)


def test_host_port_ranges(berthd: Daemon) -> None:
    tag = uuid.uuid4().hex[:6]
    base = _free_range(4)
    names = [f"pr{i}-{tag}" for i in range(4)]
    try:
        # one container port, a host range: each container gets the first free port of it
        for name in names[:3]:
            docker(berthd, "run", "-d", "--name", name, "-p", f"127.0.0.1:{base}-{base + 2}:80", "busybox",
                   "sleep", "300")
        got = [docker(berthd, "port", n, "80").stdout.strip() for n in names[:3]]
        assert got == [f"127.0.0.1:{base + i}" for i in range(3)]
        full = docker(berthd, "run", "-d", "--name", names[3], "-p", f"127.0.0.1:{base}-{base + 2}:80", "busybox",
                      "sleep", "300", check=False)
        assert full.returncode != 0 and "all ports are allocated" in full.stderr
        docker(berthd, "rm", "-f", *names)
        # equal ranges map one to one
        docker(berthd, "run", "-d", "--name", names[0], "-p", f"127.0.0.1:{base}-{base + 1}:80-81", "busybox",
               "sleep", "300")
        assert docker(berthd, "port", names[0]).stdout.split("\n")[:2] == [
            f"80/tcp -> 127.0.0.1:{base}", f"81/tcp -> 127.0.0.1:{base + 1}"]
    finally:
        docker(berthd, "rm", "-f", *names, check=False)


def test_network_rm_with_stopped_container(berthd: Daemon) -> None:
    tag = uuid.uuid4().hex[:6]
    net, stopped, running = f"rmn-{tag}", f"rms-{tag}", f"rmr-{tag}"
    try:
        docker(berthd, "network", "create", net)
        docker(berthd, "run", "-d", "--name", running, "--network", net, "busybox", "sleep", "300")
        out = docker(berthd, "network", "rm", net, check=False)
        assert out.returncode != 0 and "active endpoints" in out.stderr
        docker(berthd, "rm", "-f", running)
        docker(berthd, "create", "--name", stopped, "--network", net, "busybox", "true")
        docker(berthd, "network", "rm", net)  # as dockerd: a stopped container has no endpoint
        out = docker(berthd, "start", stopped, check=False)
        assert out.returncode != 0 and f"network {net} not found" in out.stderr
        # and prune takes a network only stopped containers name (dockerd: no endpoint, unused)
        docker(berthd, "network", "create", "--label", f"t={tag}", net)
        docker(berthd, "create", "--name", f"{stopped}2", "--network", net, "busybox", "true")
        assert net in docker(berthd, "network", "prune", "-f", "--filter", f"label=t={tag}").stdout
    finally:
        docker(berthd, "rm", "-f", f"{stopped}2", check=False)
        docker(berthd, "rm", "-f", stopped, running, check=False)
        docker(berthd, "network", "rm", net, check=False)


def test_mac_address(berthd: Daemon) -> None:
    tag = uuid.uuid4().hex[:6]
    cli, api = f"mc-{tag}", f"ma-{tag}"
    try:
        # the docker CLI 28 sends it per endpoint (API 1.44+) ...
        docker(berthd, "run", "-d", "--name", cli, "--mac-address", "02:42:ac:11:00:0a", "busybox", "sleep", "300")
        assert "02:42:ac:11:00:0a" in docker(berthd, "exec", cli, "ip", "link", "show", "eth0").stdout
        # ... docker-py at API 1.41 in Config.MacAddress
        status, out = berthd.request("POST", f"/v1.41/containers/create?name={api}",
                                     {"Image": "busybox", "Cmd": ["sleep", "300"], "MacAddress": "02:42:ac:11:00:0b"})
        assert status == 201, out
        docker(berthd, "start", api)
        info = json.loads(docker(berthd, "inspect", api).stdout)[0]
        assert info["NetworkSettings"]["MacAddress"] == "02:42:ac:11:00:0b"
        assert "02:42:ac:11:00:0b" in docker(berthd, "exec", api, "ip", "link", "show", "eth0").stdout
    finally:
        docker(berthd, "rm", "-f", cli, api, check=False)
