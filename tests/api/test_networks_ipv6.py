"""IPv6 on user-defined networks through the real docker CLI: `network create --ipv6`, addresses
(automatic and `--ip6`), the default route, AAAA answers of the built-in DNS, ip6tables rules in
berth's own chains, and their removal with the network."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid

import pytest

from ..conftest import Daemon
from .test_docker_cli import DOCKER, docker

pytestmark = [
    pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed"),
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip6tables") is None, reason="needs root and ip6tables"),
]


def _rules6(prefix: str) -> list[str]:
    out = subprocess.run(["ip6tables-save"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line.startswith(f"-A {prefix}-")]


def test_ipv6_network_addresses_dns_and_rules(berthd: Daemon) -> None:
    tag = "a" + uuid.uuid4().hex[:3]  # no leading zero: IPv6 text drops it, and the checks compare text
    net, a, b = f"v6-{tag}", f"v6a-{tag}", f"v6b-{tag}"
    subnet = f"fd5e:{tag}::/64"  # the host's own fd00::/64 stays out of the way
    try:
        nid = docker(berthd, "network", "create", "--ipv6", "--subnet", subnet, net).stdout.strip()
        docker(berthd, "run", "-d", "--name", a, "--network", net, "busybox", "httpd", "-f", "-p", "80")
        docker(berthd, "run", "-d", "--name", b, "--network", net, "--ip6", f"fd5e:{tag}::99", "busybox",
               "sleep", "300")
        ep = json.loads(docker(berthd, "inspect", b).stdout)[0]["NetworkSettings"]["Networks"][net]
        assert ep["GlobalIPv6Address"] == f"fd5e:{tag}::99" and ep["GlobalIPv6PrefixLen"] == 64
        assert ep["IPAMConfig"] == {"IPv6Address": f"fd5e:{tag}::99"}
        assert ep["IPv6Gateway"] == f"fd5e:{tag}::1" and ep["IPAddress"]  # IPv4 as well
        info = json.loads(docker(berthd, "network", "inspect", net).stdout)[0]
        assert info["EnableIPv6"] is True
        assert {"Subnet": subnet} in info["IPAM"]["Config"]  # as dockerd: no gateway was given
        a6 = info["Containers"][docker(berthd, "inspect", "-f", "{{.Id}}", a).stdout.strip()]["IPv6Address"]
        assert a6.startswith(f"fd5e:{tag}::") and a6.endswith("/64")

        assert f"default via fd5e:{tag}::1" in docker(berthd, "exec", b, "ip", "-6", "route").stdout
        # the built-in DNS answers AAAA with the address, and the name reaches it over IPv6
        out = docker(berthd, "exec", b, "nslookup", "-type=AAAA", a, "127.0.0.11").stdout
        assert a6.split("/")[0] in out
        get = rf"printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 {a6.split('/')[0]} 80"
        assert "HTTP/1." in docker(berthd, "exec", b, "sh", "-c", get).stdout
        assert "HTTP/1." in docker(berthd, "exec", b, "sh", "-c", get.replace(a6.split("/")[0], a)).stdout
        # /etc/hosts names the container's own IPv6 address too
        assert f"fd5e:{tag}::99" in docker(berthd, "exec", b, "cat", "/etc/hosts").stdout

        bridge = f"br-{nid[:12]}"
        rules = _rules6(berthd.iptables_prefix)
        assert any(f"-s {subnet}" in r and "MASQUERADE" in r for r in rules), rules
        assert any(f"-i {bridge} -o {bridge} -j ACCEPT" in r for r in rules), rules

        # a fixed address outside the subnet, or on a network without IPv6, is refused
        bad = docker(berthd, "run", "--rm", "--network", net, "--ip6", "fd5f::5", "busybox", "true", check=False)
        assert bad.returncode != 0 and "does not belong to subnet" in bad.stderr
        bad = docker(berthd, "run", "--rm", "--ip6", f"fd5e:{tag}::5", "busybox", "true", check=False)
        assert bad.returncode != 0
    finally:
        docker(berthd, "rm", "-f", a, b, check=False)
        docker(berthd, "network", "rm", net, check=False)
    assert not any(subnet in r for r in _rules6(berthd.iptables_prefix))


def test_ipv6_subnet_from_the_default_pool(berthd: Daemon) -> None:
    net = f"v6auto-{uuid.uuid4().hex[:6]}"
    try:
        docker(berthd, "network", "create", "--ipv6", net)
        cfg = json.loads(docker(berthd, "network", "inspect", net).stdout)[0]["IPAM"]["Config"]
        v6 = [c for c in cfg if ":" in c["Subnet"]]
        assert len(v6) == 1 and v6[0]["Subnet"].startswith("fdb7:e27a:5f00:") and v6[0]["Subnet"].endswith("/64")
        out = docker(berthd, "run", "--rm", "--network", net, "busybox", "ip", "-o", "-6", "addr", "show", "eth0",
                     "scope", "global").stdout
        assert v6[0]["Subnet"].split("::")[0] in out
        # an IPv6 subnet without --ipv6 is an error, as a second IPv6 subnet is
        bad = docker(berthd, "network", "create", "--subnet", "fd5e:ffff::/64", f"{net}-x", check=False)
        assert bad.returncode != 0 and "EnableIPv6" in bad.stderr
    finally:
        docker(berthd, "network", "rm", net, check=False)


def test_berth_cli_ipv6_and_connect_with_ip6(berthd: Daemon) -> None:
    """`berth network create --ipv6` and `network connect --ip6` on a running container."""
    from .test_cli import Berth

    b = Berth(berthd.host)
    tag = "a" + uuid.uuid4().hex[:3]  # no leading zero: IPv6 text drops it, and the checks compare text
    net, ctr = f"v6cli-{tag}", b.name("v6c")
    try:
        b.ok("network", "create", "--ipv6", "--subnet", f"fd5e:{tag}:1::/64", net)
        assert json.loads(b.ok("network", "inspect", net))[0]["EnableIPv6"] is True
        b.ok("run", "-d", "--name", ctr, "busybox", "sleep", "300")
        b.ok("network", "connect", "--ip6", f"fd5e:{tag}:1::42", net, ctr)
        out = b.ok("exec", ctr, "ip", "-o", "-6", "addr", "show", "scope", "global")
        assert f"fd5e:{tag}:1::42/64" in out
        ep = json.loads(b.ok("inspect", ctr))[0]["NetworkSettings"]["Networks"][net]
        assert ep["GlobalIPv6Address"] == f"fd5e:{tag}:1::42"
        assert "default via" not in b.ok("exec", ctr, "ip", "-6", "route")  # the first network keeps it
    finally:
        b.cleanup()
        b("network", "rm", net)
