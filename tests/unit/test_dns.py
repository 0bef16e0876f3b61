"""The built-in DNS's answers (wire format through dnspython), docker's link variables and the
resolv.conf of a container on a user-defined network."""

from __future__ import annotations

import asyncio

import dns.message
import dns.rcode
import dns.rdatatype

from berth.daemon.network_links import link_env, parse_link
from berth.network.dns import answer_locally, forward
from berth.runtime.etcfiles import embedded_resolv_conf


class Table:
    def resolve(self, container_id: str, name: str) -> list[str] | None:
        return ["10.1.0.2", "10.1.0.3"] if container_id == "me" and name == "web" else None

    def reverse(self, container_id: str, ip: str) -> str | None:
        return "web.net" if ip == "10.1.0.2" else None

    def upstreams(self, container_id: str) -> list[str]:
        return []


def _ask(name: str, rdtype: str, asker: str = "me") -> dns.message.Message | None:
    wire = dns.message.make_query(name, rdtype).to_wire()
    out = answer_locally(Table(), asker, wire)
    return None if out is None else dns.message.from_wire(out)


def test_known_names_answered_others_forwarded() -> None:
    r = _ask("web.", "A")
    assert r is not None and r.rcode() == dns.rcode.NOERROR
    assert sorted(rd.address for rd in r.answer[0]) == ["10.1.0.2", "10.1.0.3"]
    aaaa = _ask("WEB", "AAAA")  # case-insensitive, NODATA for IPv6
    assert aaaa is not None and aaaa.answer == []
    assert _ask("web", "A", asker="stranger") is None
    assert _ask("example.com", "A") is None
    ptr = _ask("2.0.1.10.in-addr.arpa.", "PTR")
    assert ptr is not None and ptr.answer[0][0].target.to_text() == "web.net."
    assert _ask("9.0.1.10.in-addr.arpa.", "PTR") is None
    garbage = answer_locally(Table(), "me", b"\x12\x34" + b"\x01" * 12)
    assert garbage is not None and garbage[:2] == b"\x12\x34"


def test_no_upstream_gives_servfail() -> None:
    wire = dns.message.make_query("example.com", "A").to_wire()
    out = asyncio.run(forward([], wire))
    assert out is not None and dns.message.from_wire(out).rcode() == dns.rcode.SERVFAIL
    # nothing listens on this loopback port: refused at once, SERVFAIL quickly
    out = asyncio.run(forward(["127.0.0.254"], wire))
    assert out is not None and dns.message.from_wire(out).rcode() == dns.rcode.SERVFAIL


def test_link_env_as_docker() -> None:
    env = link_env("db-1", "/web/db-1", "10.0.0.2", ["5432/tcp", "53/udp", "53/tcp"], ["FOO=bar", "PATH=/x"])
    assert env[0] == "DB_1_PORT=tcp://10.0.0.2:53"
    assert "DB_1_PORT_5432_TCP=tcp://10.0.0.2:5432" in env and "DB_1_PORT_53_UDP_PROTO=udp" in env
    assert "DB_1_NAME=/web/db-1" in env and "DB_1_ENV_FOO=bar" in env
    assert not any(e.startswith("DB_1_ENV_PATH") for e in env)
    ranged = link_env("a", "/p/a", "1.2.3.4", ["80/tcp", "81/tcp", "82/tcp"], [])
    assert "A_PORT_80_TCP_START=tcp://1.2.3.4:80" in ranged and "A_PORT_80_TCP_PORT_END=82" in ranged
    assert parse_link("db:alias") == ("db", "alias")
    assert parse_link("/db:/web/alias") == ("db", "alias")
    assert parse_link("db") == ("db", "db")


def test_embedded_resolv_conf() -> None:
    host = "search corp.example\nnameserver 10.0.0.53\noptions timeout:2\n"
    assert embedded_resolv_conf(host, (), ()) == ("search corp.example\nnameserver 127.0.0.11\n"
                                                  "options timeout:2 ndots:0\n")
    assert embedded_resolv_conf(host, ["a.b"], ["ndots:3"]) == "search a.b\nnameserver 127.0.0.11\noptions ndots:3\n"
