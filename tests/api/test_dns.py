"""The built-in DNS of user-defined networks and legacy links, through the real docker CLI and
busybox's `nslookup`/`nc` inside containers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable

import pytest

from ..conftest import Daemon
from .test_docker_cli import DOCKER, docker

pytestmark = [
    pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
]

GET = r"printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 {host} 80"


def _lookup(d: Daemon, network: str, name: str) -> str:
    out = docker(d, "run", "--rm", "--network", network, "busybox", "nslookup", "-type=a", name, check=False)
    return out.stdout + out.stderr


def _ip(d: Daemon, name: str, network: str) -> str:
    out = docker(d, "inspect", "-f", f"{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}", name)
    return out.stdout.strip()


def test_names_aliases_isolation_and_restart(berthd: Daemon) -> None:
    tag = uuid.uuid4().hex[:8]
    a, b = f"dna-{tag}", f"dnb-{tag}"
    web, other = f"web-{tag}", f"other-{tag}"
    sub = f"10.217.{int(tag[:2], 16)}"  # outside the test daemons' pools (10.212.0.0/14)
    try:
        docker(berthd, "network", "create", "--subnet", f"{sub}.0/24", a)
        docker(berthd, "network", "create", b)
        docker(berthd, "run", "-d", "--name", web, "--network", a, "--network-alias", "www",
               "--hostname", f"h{tag}", "busybox", "httpd", "-f", "-p", "80")
        docker(berthd, "run", "-d", "--name", other, "--network", b, "busybox", "sleep", "300")
        ip = _ip(berthd, web, a)
        resolv = docker(berthd, "run", "--rm", "--network", a, "busybox", "cat", "/etc/resolv.conf").stdout
        assert "nameserver 127.0.0.11" in resolv and "ndots:0" in resolv
        for name in (web, "www", f"h{tag}", f"{web}.{a}"):
            assert ip in _lookup(berthd, a, name), name
        for host in (web, "www"):
            out = docker(berthd, "run", "--rm", "--network", a, "busybox", "sh", "-c", GET.format(host=host))
            assert "HTTP/1." in out.stdout
        # a container on another network cannot resolve them
        out = docker(berthd, "exec", other, "nslookup", "-type=a", web, check=False)
        assert ip not in out.stdout and ("NXDOMAIN" in out.stdout + out.stderr or out.returncode != 0)
        assert ip not in _lookup(berthd, b, "www")
        # a new address (disconnected, reconnected with another IP) is what the name answers next
        docker(berthd, "stop", "-t", "0", web)
        docker(berthd, "network", "disconnect", a, web)
        docker(berthd, "network", "connect", "--ip", f"{sub}.77", "--alias", "www", a, web)
        docker(berthd, "start", web)
        assert _ip(berthd, web, a) == f"{sub}.77"
        out = _lookup(berthd, a, web)
        assert f"{sub}.77" in out and ip not in out
        assert f"{sub}.77" in _lookup(berthd, a, "www")
    finally:
        docker(berthd, "rm", "-f", web, other, check=False)
        docker(berthd, "network", "rm", a, b, check=False)


def test_default_bridge_has_no_dns_but_links(berthd: Daemon) -> None:
    tag = uuid.uuid4().hex[:8]
    db = f"db-{tag}"
    try:
        docker(berthd, "run", "-d", "--name", db, "-e", "FOO=bar", "--expose", "5432", "busybox", "sleep", "300")
        ip = _ip(berthd, db, "bridge")
        resolv = docker(berthd, "run", "--rm", "busybox", "cat", "/etc/resolv.conf").stdout
        assert "127.0.0.11" not in resolv
        out = docker(berthd, "run", "--rm", "--link", f"{db}:db", "busybox", "sh", "-c",
                     "cat /etc/hosts; env").stdout
        hosts_line = next(line for line in out.splitlines() if line.startswith(ip))
        assert hosts_line.split()[1] == "db" and db in hosts_line.split()
        env = dict(line.split("=", 1) for line in out.splitlines() if line.startswith("DB_"))
        assert env["DB_PORT"] == f"tcp://{ip}:5432"
        assert env["DB_PORT_5432_TCP_ADDR"] == ip and env["DB_PORT_5432_TCP_PORT"] == "5432"
        assert env["DB_PORT_5432_TCP_PROTO"] == "tcp" and env["DB_ENV_FOO"] == "bar"
        assert env["DB_NAME"].endswith("/db")
        docker(berthd, "create", "--name", f"lk-{tag}", "--link", f"{db}:db", "busybox", "true")
        links = docker(berthd, "inspect", "-f", "{{json .HostConfig.Links}}", f"lk-{tag}").stdout.strip()
        assert links == f'["/{db}:/lk-{tag}/db"]'
        bad = docker(berthd, "create", "--link", f"nothere-{tag}:x", "busybox", "true", check=False)
        assert bad.returncode != 0 and f"could not get container for nothere-{tag}" in bad.stderr
        # the name of a container on the default bridge does not resolve through its nameserver
        out = docker(berthd, "run", "--rm", "busybox", "nslookup", db, check=False)
        assert ip not in out.stdout
    finally:
        docker(berthd, "rm", "-f", db, f"lk-{tag}", check=False)


def test_dns_survives_daemon_restart(fresh_berthd: Callable[..., Daemon]) -> None:
    d = fresh_berthd()
    docker(d, "network", "create", "dn")
    docker(d, "run", "-d", "--name", "srv", "--network", "dn", "busybox", "sleep", "300")
    docker(d, "run", "-d", "--name", "cli", "--network", "dn", "busybox", "sleep", "300")
    ip = _ip(d, "srv", "dn")
    d.kill9()
    d.start()  # returns once the daemon answers
    out = docker(d, "exec", "cli", "nslookup", "-type=a", "srv", check=False)
    assert ip in out.stdout, out
    docker(d, "rm", "-f", "srv", "cli")
    docker(d, "network", "rm", "dn")

