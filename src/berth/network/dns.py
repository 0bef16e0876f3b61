"""The built-in DNS of user-defined networks: a resolver at 127.0.0.11 inside each container's netns.

As docker's: the container's resolv.conf says `nameserver 127.0.0.11`; a UDP and a TCP socket are
bound to `127.0.0.11:0` inside the container's network namespace (a short-lived thread `setns`es
there: a socket stays in the namespace it was created in) and a nat rule in that namespace sends
`127.0.0.11:53` to them (conntrack turns the replies' source port back into 53, so no SNAT rule
is needed). The sockets are then served by the daemon's event loop: one pair per container, one name table for all.

Names the table knows (`Names.resolve`) are answered at once; anything else is forwarded, from the
daemon's own namespace, to the container's upstream servers (the host's, or its `--dns`), and
SERVFAIL comes back quickly when none answers. A socket holds its namespace alive: `stop` must run
before the namespace is deleted.

Imports only berth.common and dnspython (and `netns`, this package's ctypes helper).
"""

from __future__ import annotations

import asyncio
import logging
import random
import shutil
import socket
import struct
import subprocess
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset

from berth.common.errors import SystemError_
from berth.network import netns

log = logging.getLogger("berth.dns")

RESOLVER_IP = "127.0.0.11"
TTL = 600
NFT_TABLE = "berth_dns"
UPSTREAM_TIMEOUT = 1.0  # per server
UPSTREAM_BUDGET = 2.5  # all servers of one query together


class Names(Protocol):
    """What the daemon knows, asked per query with the id of the container that asks."""

    def resolve(self, container_id: str, name: str) -> list[str] | None:
        """Addresses (IPv4 and IPv6) of `name` (lower case, no final dot) on the networks the asker
        shares with it; None when the name is not a container's (then the query goes upstream)."""
        ...

    def reverse(self, container_id: str, ip: str) -> str | None:
        """The name of the container that has `ip` on a network shared with the asker."""
        ...

    def upstreams(self, container_id: str) -> list[str]:
        """Servers to forward other names to; none means answer SERVFAIL (internal networks)."""
        ...


def host_nameservers(path: str = "/etc/resolv.conf") -> list[str]:
    """The `nameserver` lines of a resolv.conf (loopback ones too: the daemon queries them from the
    host's namespace, where they are reachable)."""
    out: list[str] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 2 and fields[0] == "nameserver":
                    out.append(fields[1].split("%", 1)[0])
    except FileNotFoundError:
        pass
    return out


# --- sockets and the nat rule inside the netns ---------------------------------------------------
def _nft_rules(udp_port: int, tcp_port: int, replace: bool = False) -> str:
    # With `replace`, declare, delete, define: one transaction that replaces the table whether or
    # not it exists. Only for a namespace that may have it: the deletion costs ~12 ms (it waits for
    # an RCU grace period), four times the rest.
    head = f"table ip {NFT_TABLE}\ndelete table ip {NFT_TABLE}\n" if replace else ""
    return (head + f"table ip {NFT_TABLE} {{\n"
            f"  chain output {{ type nat hook output priority -100; policy accept;\n"
            f"    ip daddr {RESOLVER_IP} udp dport 53 dnat to {RESOLVER_IP}:{udp_port}\n"
            f"    ip daddr {RESOLVER_IP} tcp dport 53 dnat to {RESOLVER_IP}:{tcp_port}\n  }}\n}}\n")


def _iptables_rules(udp_port: int, tcp_port: int) -> str:
    ch_out = "BERTH_DNS_OUTPUT"
    return ("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
            f":POSTROUTING ACCEPT [0:0]\n:{ch_out} - [0:0]\n"
            f"-A OUTPUT -d {RESOLVER_IP}/32 -j {ch_out}\n"
            f"-A {ch_out} -d {RESOLVER_IP}/32 -p udp --dport 53 -j DNAT --to-destination {RESOLVER_IP}:{udp_port}\n"
            f"-A {ch_out} -d {RESOLVER_IP}/32 -p tcp --dport 53 -j DNAT --to-destination {RESOLVER_IP}:{tcp_port}\n"
            "COMMIT\n")


def _write_rules(udp_port: int, tcp_port: int, replace: bool) -> None:
    """In the calling thread's netns (a child process inherits the thread's namespaces). `nft` is
    ~3 ms, `iptables-restore` ~12 ms: the former when installed."""
    if shutil.which("nft"):
        argv, text = ["nft", "-f", "-"], _nft_rules(udp_port, tcp_port, replace)
    else:
        argv, text = ["iptables-restore", "-w"], _iptables_rules(udp_port, tcp_port)
    r = subprocess.run(argv, input=text, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise SystemError_(f"DNS rule in the container's namespace: {argv[0]} failed: {r.stderr.strip()}")


@dataclass
class Sockets:
    udp: socket.socket
    tcp: socket.socket

    @property
    def ports(self) -> tuple[int, int]:
        return int(self.udp.getsockname()[1]), int(self.tcp.getsockname()[1])

    def close(self) -> None:
        self.udp.close()
        self.tcp.close()


def open_sockets(netns_path: str, fresh: bool = True) -> Sockets:
    """Blocking (a thread and a process): a UDP and a TCP socket on 127.0.0.11 inside the netns,
    and the nat rule that sends port 53 to them. `fresh`: the namespace was just made, so there is
    no earlier rule to replace (a daemon restart passes False)."""
    def inside() -> Sockets:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            udp.bind((RESOLVER_IP, 0))
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((RESOLVER_IP, 0))
            tcp.listen(64)
            udp.setblocking(False)
            tcp.setblocking(False)
            socks = Sockets(udp, tcp)
            _write_rules(*socks.ports, replace=not fresh)
            return socks
        except BaseException:
            udp.close()
            tcp.close()
            raise

    return netns.run_in(netns_path, inside)


# --- answering -------------------------------------------------------------------------------------
def answer_locally(names: Names, container_id: str, wire: bytes) -> bytes | None:
    """The response for a query the table can answer, FORMERR for garbage, None to forward."""
    try:
        q = dns.message.from_wire(wire)
    except dns.exception.DNSException:
        if len(wire) >= 12:  # echo the id and the question count-free header with FORMERR
            qid, flags = struct.unpack("!HH", wire[:4])
            return struct.pack("!HHHHHH", qid, 0x8000 | (flags & 0x7900) | dns.rcode.FORMERR, 0, 0, 0, 0)
        return None
    if q.opcode() != 0 or len(q.question) != 1:
        return None
    qq = q.question[0]
    if qq.rdclass != dns.rdataclass.IN:
        return None
    qname = qq.name.to_text(omit_final_dot=True).lower()
    if qq.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.ANY):
        ips = names.resolve(container_id, qname)
        if ips is None:
            return None
        r = dns.message.make_response(q)
        r.flags |= dns.flags.AA | dns.flags.RA
        # A name without addresses of the asked family gets NODATA, so clients do not go elsewhere.
        for rdtype, kind in ((dns.rdatatype.A, "A"), (dns.rdatatype.AAAA, "AAAA")):
            if qq.rdtype not in (rdtype, dns.rdatatype.ANY):
                continue
            shuffled = [ip for ip in ips if (":" in ip) == (kind == "AAAA")]
            random.shuffle(shuffled)  # round robin among containers sharing an alias
            if shuffled:
                r.answer.append(dns.rrset.from_text_list(qq.name, TTL, "IN", kind, shuffled))
        return bytes(r.to_wire())
    if qq.rdtype == dns.rdatatype.PTR:
        try:
            ip = dns.reversename.to_address(qq.name)
        except (dns.exception.DNSException, ValueError):
            return None
        target = names.reverse(container_id, ip)
        if target is None:
            return None
        r = dns.message.make_response(q)
        r.flags |= dns.flags.AA | dns.flags.RA
        r.answer.append(dns.rrset.from_text_list(qq.name, TTL, "IN", "PTR", [target + "."]))
        return bytes(r.to_wire())
    return None


def servfail(wire: bytes) -> bytes | None:
    try:
        q = dns.message.from_wire(wire)
    except dns.exception.DNSException:
        return None
    r = dns.message.make_response(q)
    r.flags |= dns.flags.RA
    r.set_rcode(dns.rcode.SERVFAIL)
    return bytes(r.to_wire())


class _UpstreamUDP(asyncio.DatagramProtocol):
    def __init__(self, qid: bytes, fut: asyncio.Future[bytes]) -> None:
        self.qid = qid
        self.fut = fut

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if data[:2] == self.qid and not self.fut.done():
            self.fut.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.fut.done():
            self.fut.set_exception(exc)


async def _udp_query(wire: bytes, server: str, timeout: float) -> bytes:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[bytes] = loop.create_future()
    transport, _ = await loop.create_datagram_endpoint(lambda: _UpstreamUDP(wire[:2], fut),
                                                       remote_addr=(server, 53))
    try:
        transport.sendto(wire)
        return await asyncio.wait_for(fut, timeout)
    finally:
        transport.close()


async def _tcp_query(wire: bytes, server: str, timeout: float) -> bytes:
    async def go() -> bytes:
        reader, writer = await asyncio.open_connection(server, 53)
        try:
            writer.write(struct.pack("!H", len(wire)) + wire)
            await writer.drain()
            (n,) = struct.unpack("!H", await reader.readexactly(2))
            return await reader.readexactly(n)
        finally:
            writer.close()

    return await asyncio.wait_for(go(), timeout)


async def forward(servers: list[str], wire: bytes, tcp: bool = False) -> bytes | None:
    """The first upstream answer, else SERVFAIL (within about UPSTREAM_BUDGET seconds)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + UPSTREAM_BUDGET
    for server in servers:
        left = end - loop.time()
        if left <= 0:
            break
        try:
            return await (_tcp_query if tcp else _udp_query)(wire, server, min(UPSTREAM_TIMEOUT, left))
        except (OSError, TimeoutError, asyncio.IncompleteReadError, struct.error):
            continue
    return servfail(wire)


# --- the server ------------------------------------------------------------------------------------
class _UDPServer(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer, container_id: str) -> None:
        self.server = server
        self.container_id = container_id
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = answer_locally(self.server.names, self.container_id, data)
        if reply is not None:
            if self.transport is not None:
                self.transport.sendto(reply, addr)
            return
        self.server.spawn(self._forward(data, addr))

    async def _forward(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = await forward(self.server.names.upstreams(self.container_id), data)
        if reply is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(reply, addr)


@dataclass
class _Listener:
    sockets: Sockets
    udp: asyncio.DatagramTransport | None = None
    tcp: asyncio.Server | None = None
    conns: set[asyncio.StreamWriter] = field(default_factory=set)


class DnsServer:
    """The listeners of every container with built-in DNS, on the running loop."""

    def __init__(self, names: Names, opener: Callable[[str], Sockets] = open_sockets) -> None:
        self.names = names
        self.open = opener
        self._listeners: dict[str, _Listener] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def serving(self, container_id: str) -> bool:
        return container_id in self._listeners

    def ports(self, container_id: str) -> tuple[int, int] | None:
        lst = self._listeners.get(container_id)
        return lst.sockets.ports if lst else None

    async def serve(self, container_id: str, socks: Sockets) -> None:
        """Serve sockets made by `open_sockets` (in a worker thread) for this container."""
        self.stop(container_id)
        loop = asyncio.get_running_loop()
        lst = _Listener(socks)
        self._listeners[container_id] = lst
        try:
            transport, _ = await loop.create_datagram_endpoint(lambda: _UDPServer(self, container_id),
                                                               sock=socks.udp)
            lst.udp = transport

            async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                lst.conns.add(writer)
                try:
                    await self._tcp_session(container_id, reader, writer)
                finally:
                    lst.conns.discard(writer)

            lst.tcp = await asyncio.start_server(on_conn, sock=socks.tcp)
        except BaseException:
            self.stop(container_id)
            raise

    async def _tcp_session(self, container_id: str, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    (n,) = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 30))
                    data = await reader.readexactly(n)
                except (asyncio.IncompleteReadError, TimeoutError, OSError):
                    return
                reply = answer_locally(self.names, container_id, data)
                if reply is None:
                    reply = await forward(self.names.upstreams(container_id), data, tcp=True)
                if reply is None:
                    return
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (ConnectionError, OSError):
            return
        finally:
            writer.close()

    def stop(self, container_id: str) -> None:
        """Close the container's sockets (they hold its netns alive); quiet if it has none."""
        lst = self._listeners.pop(container_id, None)
        if lst is None:
            return
        if lst.udp is not None:
            lst.udp.close()
        if lst.tcp is not None:
            lst.tcp.close()
        for w in list(lst.conns):
            w.close()
        lst.sockets.close()  # the transports close them later; the netns must go now

    def close(self) -> None:
        for cid in list(self._listeners):
            self.stop(cid)
        for t in list(self._tasks):
            t.cancel()


def rules_tool() -> str:
    """Which tool writes the rule in containers' namespaces (for logs and tests)."""
    return "nft" if shutil.which("nft") else "iptables-restore"

