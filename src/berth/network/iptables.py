"""berth's iptables rules: base chains jumped from the built-in ones, network and port rules in them.

The rules in berth's chains are rendered whole from the daemon's state and written with one
`iptables-restore --noflush` per change: a chain declared in the input is flushed and refilled in
the same transaction, so re-applying (after a `kill -9` of the daemon, say) never duplicates a rule
and never opens a window without them, and nothing outside berth's chains is touched. Only the
jumps from the built-in chains are added one by one, checked with `-C` first.

Why its own chains jumped from filter FORWARD: dockerd sets the FORWARD policy to DROP, and only an
ACCEPT in that chain (not in another table) lets bridged and routed container traffic through.

Layout (prefix `BERTH` by default; tests and side-by-side daemons use their own):
  filter FORWARD     -> BERTH-FORWARD: isolation first, then per network: replies in, published
                        ports in (BERTH-PORTS), out of the bridge (not internal), bridge to bridge
                        (ACCEPT, or DROP when icc is off)
  BERTH-ISOLATION-1/2   drop traffic between different berth bridges; internal networks drop
                        anything to or from outside their subnet
  nat PREROUTING, OUTPUT (dst-type LOCAL) -> BERTH-DNAT: published ports
  nat POSTROUTING    -> BERTH-POSTROUTING: masquerade out of the host, of 127.0.0.0/8 into the
                        bridge (publishing on 127.0.0.1 with route_localnet), and hairpin

Overlay networks (an engine with a cluster store): their bridges (`ov-<id>`, no address, so
nothing is routed between them) carry bridged traffic between the VXLAN device and the
containers' veths, which br_netfilter sends through FORWARD: one rule accepts it within any
overlay bridge (`-i ov-+ -o ov-+`), first, as a DROP policy would otherwise drop it.

IPv6 (`--ipv6` networks): the same chains in ip6tables, with the same forward, isolation and
masquerade rules for the networks' IPv6 subnets (as dockerd with `ip6tables` on). Published ports
stay IPv4. They are written only once a network has IPv6, or when a previous daemon left them.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address

from berth.common.errors import SystemError_
from berth.network.model import NetworkConfig, PortBinding

Runner = Callable[[list[str], str | None], subprocess.CompletedProcess[str]]
OVERLAY_BRIDGES = "ov-+"  # berth.network.overlay's bridge names


@dataclass(frozen=True)
class Published:
    """A held host port forwarded to a container address on a network's bridge."""

    bridge: str
    ip: IPv4Address
    port: PortBinding


@dataclass(frozen=True)
class Chains:
    prefix: str = "BERTH"

    @property
    def forward(self) -> str:
        return f"{self.prefix}-FORWARD"

    @property
    def iso1(self) -> str:
        return f"{self.prefix}-ISOLATION-1"

    @property
    def iso2(self) -> str:
        return f"{self.prefix}-ISOLATION-2"

    @property
    def ports(self) -> str:
        return f"{self.prefix}-PORTS"

    @property
    def dnat(self) -> str:
        return f"{self.prefix}-DNAT"

    @property
    def post(self) -> str:
        return f"{self.prefix}-POSTROUTING"

    def of(self, table: str) -> list[str]:
        if table == "filter":
            return [self.forward, self.iso1, self.iso2, self.ports]
        return [self.dnat, self.post]

    def jumps6(self) -> list[tuple[str, str, list[str]]]:
        """The ip6tables jumps: no published ports, so no DNAT."""
        return [j for j in self.jumps() if j[1] in ("FORWARD", "POSTROUTING")]

    def jumps(self) -> list[tuple[str, str, list[str]]]:
        """(table, built-in chain, rule) for every jump into berth's chains."""
        local = ["-m", "addrtype", "--dst-type", "LOCAL"]
        return [("filter", "FORWARD", ["-j", self.forward]),
                ("nat", "PREROUTING", [*local, "-j", self.dnat]),
                ("nat", "OUTPUT", [*local, "-j", self.dnat]),
                ("nat", "POSTROUTING", ["-j", self.post])]


def _match(p: PortBinding) -> str:
    return f"-p {p.proto} -m {p.proto} --dport"


def render(chains: Chains, networks: Iterable[NetworkConfig],
           published: Iterable[Published], overlay: bool = False) -> dict[str, str]:
    """iptables-restore input per table for the given state (`overlay`: accept bridged traffic in
    overlay bridges). Pure."""
    c = chains
    nets = sorted(networks, key=lambda n: n.bridge)
    pubs = sorted(published, key=lambda p: (p.bridge, int(p.ip), p.port.proto, p.port.host_port))
    fwd: list[str] = [f"-A {c.forward} -i {OVERLAY_BRIDGES} -o {OVERLAY_BRIDGES} -j ACCEPT"] if overlay else []
    fwd += [f"-A {c.forward} -j {c.iso1}"] if nets else []
    iso1: list[str] = []
    iso2: list[str] = []
    post: list[str] = []
    for n in nets:
        br = n.bridge
        if n.internal:
            iso1 += [f"-A {c.iso1} ! -s {n.subnet} -o {br} -j DROP",
                     f"-A {c.iso1} ! -d {n.subnet} -i {br} -j DROP"]
        iso1.append(f"-A {c.iso1} -i {br} ! -o {br} -j {c.iso2}")
        iso2.append(f"-A {c.iso2} -o {br} -j DROP")
        fwd.append(f"-A {c.forward} -o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
        if not n.internal:
            fwd += [f"-A {c.forward} -o {br} -j {c.ports}",
                    f"-A {c.forward} -i {br} ! -o {br} -j ACCEPT"]
            if n.masquerade:
                post.append(f"-A {c.post} -s {n.subnet} ! -o {br} -j MASQUERADE")
        fwd.append(f"-A {c.forward} -i {br} -o {br} -j {'ACCEPT' if n.icc else 'DROP'}")
        post.append(f"-A {c.post} -s 127.0.0.0/8 -o {br} -j MASQUERADE")
    ports: list[str] = []
    dnat: list[str] = []
    for pub in pubs:
        rules = port_rules(c, pub)
        ports += rules["filter"]
        dnat.append(rules["nat"][0])
        post += rules["nat"][1:]

    def table(name: str, rules: list[str]) -> str:
        head = [f"*{name}", *(f":{ch} - [0:0]" for ch in chains.of(name))]
        return "\n".join([*head, *rules, "COMMIT", ""])

    return {"filter": table("filter", fwd + iso1 + iso2 + ports), "nat": table("nat", dnat + post)}


def render6(chains: Chains, networks: Iterable[NetworkConfig]) -> dict[str, str]:
    """ip6tables-restore input per table for the networks' IPv6 subnets. Pure."""
    c = chains
    nets = sorted((n for n in networks if n.subnet6 is not None), key=lambda n: n.bridge)
    fwd: list[str] = [f"-A {c.forward} -j {c.iso1}"] if nets else []
    iso1: list[str] = []
    iso2: list[str] = []
    post: list[str] = []
    for n in nets:
        br, sub = n.bridge, n.subnet6
        if n.internal:
            iso1 += [f"-A {c.iso1} ! -s {sub} -o {br} -j DROP", f"-A {c.iso1} ! -d {sub} -i {br} -j DROP"]
        iso1.append(f"-A {c.iso1} -i {br} ! -o {br} -j {c.iso2}")
        iso2.append(f"-A {c.iso2} -o {br} -j DROP")
        fwd.append(f"-A {c.forward} -o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
        if not n.internal:
            fwd.append(f"-A {c.forward} -i {br} ! -o {br} -j ACCEPT")
            if n.masquerade:
                post.append(f"-A {c.post} -s {sub} ! -o {br} -j MASQUERADE")
        fwd.append(f"-A {c.forward} -i {br} -o {br} -j {'ACCEPT' if n.icc else 'DROP'}")

    def table(name: str, rules: list[str]) -> str:
        head = [f"*{name}", *(f":{ch} - [0:0]" for ch in chains.of(name))]
        return "\n".join([*head, *rules, "COMMIT", ""])

    return {"filter": table("filter", fwd + iso1 + iso2), "nat": table("nat", post)}


def port_rules(c: Chains, pub: Published) -> dict[str, list[str]]:
    """A published port's rules per table: the DNAT, the FORWARD accept, the hairpin masquerade.
    They match nothing but this port, so their order among others' does not matter."""
    p, ip = pub.port, pub.ip
    dst = "" if p.host_ip == "0.0.0.0" else f"-d {p.host_ip}/32 "
    return {"filter": [f"-A {c.ports} -d {ip}/32 ! -i {pub.bridge} -o {pub.bridge} "
                       f"{_match(p)} {p.container_port} -j ACCEPT"],
            "nat": [f"-A {c.dnat} {dst}{_match(p)} {p.host_port} "
                    f"-j DNAT --to-destination {ip}:{p.container_port}",
                    f"-A {c.post} -s {ip}/32 -d {ip}/32 {_match(p)} {p.container_port} -j MASQUERADE"]}


def port_change(c: Chains, pubs: Iterable[Published], add: bool) -> str:
    """iptables-restore input (for --noflush) that appends or deletes just these ports' rules: no
    chain is flushed, which is what makes it cheap (a flush costs the kernel 10-20 ms a table)."""
    by_table: dict[str, list[str]] = {"filter": [], "nat": []}
    for pub in pubs:
        for table, rules in port_rules(c, pub).items():
            by_table[table] += rules if add else ["-D" + r[2:] for r in rules]
    return "".join(f"*{t}\n" + "".join(r + "\n" for r in rules) + "COMMIT\n"
                   for t, rules in by_table.items() if rules)


def _run(argv: list[str], stdin: str | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)


class Firewall:
    """Writes berth's chains. Not thread-safe: the driver serialises calls."""

    def __init__(self, prefix: str = "BERTH", run: Runner = _run, accept_overlay: bool = False) -> None:
        self.chains = Chains(prefix)
        self.accept_overlay = accept_overlay
        self._run = run
        self._jumps_checked = False
        self._v6: bool | None = None  # ip6tables chains written; None: not known yet (new daemon)

    def _check(self, argv: list[str], stdin: str | None = None) -> None:
        r = self._run(argv, stdin)
        if r.returncode != 0:
            raise SystemError_(f"{' '.join(argv[:4])} failed: {r.stderr.strip()}")

    def apply(self, networks: Iterable[NetworkConfig], published: Iterable[Published]) -> None:
        """Make berth's chains hold exactly the rules for this state, and the jumps into them exist
        (checked once per instance, i.e. per daemon start: each check is a process)."""
        networks = list(networks)
        text = "".join(render(self.chains, networks, published, self.accept_overlay).values())
        self._check(["iptables-restore", "-w", "--noflush"], text)
        if not self._jumps_checked:
            self._ensure_jumps()
            self._jumps_checked = True
        self._apply6(networks)

    def _apply6(self, networks: list[NetworkConfig]) -> None:
        want = any(n.subnet6 is not None for n in networks)
        if self._v6 is None and not want:
            # A daemon start: only an earlier daemon's leftovers need emptying (one process).
            self._v6 = bool(shutil.which("ip6tables")) and self._run(
                ["ip6tables", "-w", "-S", self.chains.forward], None).returncode == 0
        if not want and not self._v6:
            return
        if not shutil.which("ip6tables-restore"):
            raise SystemError_("IPv6 networks need ip6tables (Debian package iptables)")
        self._check(["ip6tables-restore", "-w", "--noflush"], "".join(render6(self.chains, networks).values()))
        if not self._v6:
            self._ensure_jumps(v6=True)
        self._v6 = True

    def add_ports(self, pubs: list[Published]) -> None:
        """Append these ports' rules (the caller knows they are not there yet)."""
        if pubs:
            self._check(["iptables-restore", "-w", "--noflush"], port_change(self.chains, pubs, add=True))

    def remove_ports(self, pubs: list[Published]) -> bool:
        """Delete these ports' rules; False if one was missing (then nothing changed: the input is
        one transaction) and the caller should `apply` the whole state instead."""
        if not pubs:
            return True
        r = self._run(["iptables-restore", "-w", "--noflush"], port_change(self.chains, pubs, add=False))
        return r.returncode == 0

    def _ensure_jumps(self, v6: bool = False) -> None:
        tool = "ip6tables" if v6 else "iptables"
        for table, builtin, rule in self.chains.jumps6() if v6 else self.chains.jumps():
            if self._run([tool, "-w", "-t", table, "-C", builtin, *rule], None).returncode != 0:
                # First in FORWARD, so ACCEPTs win over any later DROP (dockerd's policy, ufw's
                # final rules); appended in nat, where order among other engines does not matter.
                where = ["-I", builtin, "1"] if table == "filter" else ["-A", builtin]
                self._check([tool, "-w", "-t", table, *where, *rule])

    def uninstall(self) -> None:
        """Remove the jumps and berth's chains altogether, IPv4 and IPv6 (tests, and a host being
        cleaned up)."""
        self._uninstall("iptables")
        if shutil.which("ip6tables-save"):
            self._uninstall("ip6tables")
        self._v6 = False

    def _uninstall(self, tool: str) -> None:
        self._jumps_checked = False
        if f"{self.chains.prefix}-" not in self._run([f"{tool}-save"], None).stdout:
            return
        mine = f"-j {self.chains.prefix}-"
        # Delete the jumps as iptables prints them, each once, and retry the whole: another
        # process changing the ruleset meanwhile (nft commits are checked against a generation)
        # can make one command fail.
        for _ in range(3):
            for table, builtin, _rule in (self.chains.jumps6() if tool == "ip6tables" else self.chains.jumps()):
                listed = self._run([tool, "-w", "-t", table, "-S", builtin], None).stdout
                for line in listed.splitlines():
                    if line.startswith(f"-A {builtin} ") and mine in line:
                        self._run([tool, "-w", "-t", table, "-D", *shlex.split(line)[1:]], None)
            for table in ("filter", "nat"):
                for ch in self.chains.of(table):
                    self._run([tool, "-w", "-t", table, "-F", ch], None)
                for ch in self.chains.of(table):
                    self._run([tool, "-w", "-t", table, "-X", ch], None)
            if f"{self.chains.prefix}-" not in self._run([f"{tool}-save"], None).stdout:
                return
        raise SystemError_(f"could not remove the {self.chains.prefix}-* {tool} chains")


def enable_forwarding(ipv6: bool = False) -> None:
    """Routing between the bridges and the host's links, as dockerd sets it (IPv6 too once a
    network has it); and br_netfilter, without which bridged traffic skips iptables and
    `enable_icc=false` could not drop it."""
    for path in ["/proc/sys/net/ipv4/ip_forward", *(["/proc/sys/net/ipv6/conf/all/forwarding"] if ipv6 else [])]:
        with open(path, "r+") as f:
            if f.read().strip() != "1":
                f.seek(0)
                f.write("1")
    if not os.path.exists("/proc/sys/net/bridge/bridge-nf-call-iptables"):
        subprocess.run(["modprobe", "br_netfilter"], capture_output=True, check=False)
    for name in ["iptables", *(["ip6tables"] if ipv6 else [])]:
        try:
            with open(f"/proc/sys/net/bridge/bridge-nf-call-{name}", "r+") as f:
                if f.read().strip() != "1":
                    f.seek(0)
                    f.write("1")
        except OSError:
            pass
