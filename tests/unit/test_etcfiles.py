"""The per-container hostname, hosts and resolv.conf files, compared with dockerd 20.10's."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from berth.common.errors import InvalidParameter
from berth.runtime.etcfiles import build_resolv_conf, write_etc_files

LOCALHOST_BLOCK = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)


@pytest.fixture
def host(tmp_path: Path) -> Path:
    h = tmp_path / "host"
    h.mkdir()
    (h / "resolv.conf").write_text(
        "# host\nsearch corp.example\nnameserver 10.0.0.2\nnameserver 127.0.0.53\n"
    )
    (h / "hosts").write_text("127.0.0.1 localhost\n127.0.0.1 vm\n")
    return h


def write(tmp_path: Path, host: Path, **kw: Any) -> list[dict[str, Any]]:
    c = tmp_path / "c"
    c.mkdir(exist_ok=True)
    return write_etc_files(
        str(c), host_resolv_conf=str(host / "resolv.conf"), host_hosts=str(host / "hosts"), **kw
    )


def test_bridge_container(tmp_path: Path, host: Path) -> None:
    mounts = write(
        tmp_path, host, hostname="myh", ip_addresses=["172.17.0.2"], extra_hosts=["foo:1.2.3.4", "bar:::1"]
    )
    c = tmp_path / "c"
    # observed: docker run --add-host foo:1.2.3.4 --add-host bar:::1 -h myh busybox cat /etc/hosts
    assert (c / "hosts").read_text() == LOCALHOST_BLOCK + "1.2.3.4\tfoo\n::1\tbar\n172.17.0.2\tmyh\n"
    assert (c / "hostname").read_text() == "myh\n"
    assert (c / "resolv.conf").read_text() == "# host\nsearch corp.example\nnameserver 10.0.0.2\n"
    assert mounts == [
        {"destination": f"/etc/{n}", "type": "bind", "source": str(c / n), "options": ["rbind", "rprivate"]}
        for n in ("resolv.conf", "hostname", "hosts")
    ]
    for n in ("resolv.conf", "hostname", "hosts"):
        assert stat.S_IMODE(os.stat(c / n).st_mode) == 0o644
    assert sorted(os.listdir(c)) == ["hostname", "hosts", "resolv.conf"]  # no temp files left


def test_none_network_domain_readonly(tmp_path: Path, host: Path) -> None:
    mounts = write(tmp_path, host, hostname="web", domainname="example.org", readonly=True)
    assert (tmp_path / "c/hosts").read_text() == LOCALHOST_BLOCK
    assert all(m["options"] == ["rbind", "ro", "rprivate"] for m in mounts)
    write(tmp_path, host, hostname="web", domainname="example.org", ip_addresses=["10.1.0.5"])
    assert (tmp_path / "c/hosts").read_text().endswith("10.1.0.5\tweb.example.org web\n")


def test_host_network_copies_host_files(tmp_path: Path, host: Path) -> None:
    write(tmp_path, host, hostname="vm", host_network=True, ip_addresses=["10.0.0.9"])
    c = tmp_path / "c"
    assert (c / "hosts").read_text() == (host / "hosts").read_text()
    assert (c / "resolv.conf").read_text() == (host / "resolv.conf").read_text()  # loopback is reachable here
    assert (c / "hostname").read_text() == "vm\n"
    # with --add-host docker builds its own file instead (still without an own-IP line)
    write(tmp_path, host, hostname="vm", host_network=True, extra_hosts=["db:10.0.0.7"], dns=["9.9.9.9"])
    assert (c / "hosts").read_text() == LOCALHOST_BLOCK + "10.0.0.7\tdb\n"
    assert (c / "resolv.conf").read_text() == "search corp.example\nnameserver 9.9.9.9\n"


def test_add_host_forms(tmp_path: Path, host: Path) -> None:
    write(tmp_path, host, hostname="h", extra_hosts=["gw:host-gateway"], host_gateway_ip="172.17.0.1")
    assert (tmp_path / "c/hosts").read_text().endswith("172.17.0.1\tgw\n")
    for bad, message in [
        ("gw:host-gateway", "host-gateway"),
        ("nohost", "want HOST:IP"),
        ("a:b", "invalid IP"),
    ]:
        with pytest.raises(InvalidParameter, match=message):
            write(tmp_path, host, hostname="h", extra_hosts=[bad])


@pytest.mark.parametrize(
    ("host_text", "dns", "search", "options", "expected"),
    [
        ("nameserver 10.255.255.53\n", [], [], [], "nameserver 10.255.255.53\n"),
        (
            "nameserver 127.0.0.1\nnameserver ::1\noptions edns0\n",
            [],
            [],
            [],
            "options edns0\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n",
        ),
        # observed: --dns 1.1.1.1 --dns-search a.example --dns-search b.example --dns-option ndots:2
        (
            "nameserver 10.255.255.53\n",
            ["1.1.1.1"],
            ["a.example", "b.example"],
            ["ndots:2"],
            "search a.example b.example\nnameserver 1.1.1.1\noptions ndots:2\n",
        ),
        (
            "search x\nnameserver 10.0.0.1\noptions rotate\n",
            [],
            ["y"],
            [],
            "search y\nnameserver 10.0.0.1\noptions rotate\n",
        ),
        (
            "nameserver 127.0.0.53\n",
            [],
            [],
            ["ndots:1"],
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\noptions ndots:1\n",
        ),
        ("search x\nnameserver 10.0.0.1\n", [], ["."], [], "nameserver 10.0.0.1\n"),  # "." clears search
        (
            "nameserver 10.0.0.1\n",
            ["127.0.0.1"],
            [],
            [],
            "nameserver 127.0.0.1\n",
        ),  # the user's choice stands
    ],
)
def test_resolv_conf(
    host_text: str, dns: list[str], search: list[str], options: list[str], expected: str
) -> None:
    assert build_resolv_conf(host_text, dns, search, options) == expected


def test_missing_host_files(tmp_path: Path) -> None:
    empty = tmp_path / "nothing"
    empty.mkdir()
    write(tmp_path, empty, hostname="h")
    assert (tmp_path / "c/resolv.conf").read_text() == "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
