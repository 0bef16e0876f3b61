"""Write a container's /etc/hostname, /etc/hosts and /etc/resolv.conf, as docker does.

The files live in the container's own directory and are bind-mounted over the image's; this
module writes them (atomically, at creation) and returns the OCI mounts. Renaming replaces the
inode, so a later change to a *running* container's hosts file must rewrite it in place instead:
its bind mount still points at the old inode.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import tempfile
from collections.abc import Sequence
from typing import Any

from berth.common.errors import InvalidParameter

HOST_RESOLV_CONF = "/etc/resolv.conf"
# Where the files are bind-mounted in the container; the runtime creates missing mount points.
MOUNT_POINTS = ("/etc/resolv.conf", "/etc/hostname", "/etc/hosts")
DOCKERENV = "/.dockerenv"
# what berth puts in a container's filesystem itself (dockerd's init layer): never a change of its own
INIT_FILES = (*MOUNT_POINTS, DOCKERENV)
HOST_HOSTS = "/etc/hosts"
# systemd-resolved's list of real upstream servers, used when the host file only has its stub.
RESOLVED_UPSTREAM = "/run/systemd/resolve/resolv.conf"

_DEFAULT_HOSTS = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)
# libnetwork's fallback when no usable nameserver is left after dropping loopback ones.
_FALLBACK_DNS = ("8.8.8.8", "8.8.4.4")


def write_etc_files(
    container_dir: str,
    *,
    hostname: str,
    domainname: str = "",
    host_network: bool = False,
    ip_addresses: Sequence[str] = (),
    extra_hosts: Sequence[str] = (),
    dns: Sequence[str] = (),
    dns_search: Sequence[str] = (),
    dns_options: Sequence[str] = (),
    readonly: bool = False,
    host_gateway_ip: str | None = None,
    host_resolv_conf: str = HOST_RESOLV_CONF,
    host_hosts: str = HOST_HOSTS,
    links: Sequence[tuple[str, str]] = (),
    embedded_dns: bool = False,
) -> list[dict[str, Any]]:
    """Write `hostname`, `hosts`, `resolv.conf` into `container_dir`; return their OCI mounts.

    `extra_hosts` are docker's `--add-host` values ("name:ip"; "host-gateway" needs
    `host_gateway_ip`). With `host_network` the host's hosts (unless `--add-host` is given) and
    resolv.conf (unless a DNS option is given) are copied verbatim, as docker does; docker also
    forces the host's hostname there, which the caller passes in `hostname`. `readonly` follows
    `--read-only`: docker then mounts these files read-only too. `links` are legacy links' lines
    ("alias hostname name", ip), after `--add-host`'s; `embedded_dns` points resolv.conf at the
    built-in resolver (user-defined networks), the `--dns` servers being its upstreams.
    """
    records = [_host_record(e, host_gateway_ip) for e in extra_hosts] + list(links)
    paths = {name: os.path.join(container_dir, name) for name in ("resolv.conf", "hostname", "hosts")}

    _write(paths["hostname"], hostname + "\n")
    if host_network and not records:
        _write(paths["hosts"], _read(host_hosts))
    else:
        own = [] if host_network else [(ip, hostname, domainname) for ip in ip_addresses]
        _write(paths["hosts"], build_hosts(records, own))
    if host_network and not (dns or dns_search or dns_options):
        _write(paths["resolv.conf"], _read(host_resolv_conf))
    elif embedded_dns and not host_network:
        _write(paths["resolv.conf"], embedded_resolv_conf(_read(host_resolv_conf), dns_search, dns_options))
    else:
        _write(
            paths["resolv.conf"],
            build_resolv_conf(_host_resolv(host_resolv_conf), dns, dns_search, dns_options),
        )

    opts = ["rbind", "ro", "rprivate"] if readonly else ["rbind", "rprivate"]
    # docker's order: resolv.conf, hostname, hosts.
    return [
        {"destination": "/etc/" + name, "type": "bind", "source": path, "options": list(opts)}
        for name, path in paths.items()
    ]


def build_hosts(extra: Sequence[tuple[str, str]], own: Sequence[tuple[str, str, str]]) -> str:
    """docker's hosts file: the fixed localhost block, `--add-host` records, then own IP lines."""
    lines = [_DEFAULT_HOSTS]
    lines += [f"{ip}\t{name}\n" for name, ip in extra]
    for ip, hostname, domain in own:
        names = f"{hostname}.{domain} {hostname}" if domain else hostname
        lines.append(f"{ip}\t{names}\n")
    return "".join(lines)


def build_resolv_conf(
    host_text: str, dns: Sequence[str], dns_search: Sequence[str], dns_options: Sequence[str]
) -> str:
    """The container's resolv.conf from the host's text and the `--dns*` options.

    Without options: the host's file minus loopback nameservers (unreachable from a container's
    own netns), with Google's servers when none remain. With any option: docker rebuilds the
    file, each part taken from the option if given, else from the host.
    """
    if not (dns or dns_search or dns_options):
        kept = [line for line in host_text.splitlines() if not _is_loopback_ns(line)]
        text = "".join(line + "\n" for line in kept)
        if not _nameservers(text):
            text += "".join(f"nameserver {ip}\n" for ip in _FALLBACK_DNS)
        return text

    servers = (
        list(dns) or [ip for ip in _nameservers(host_text) if not _is_loopback(ip)] or list(_FALLBACK_DNS)
    )
    search = list(dns_search) or _field(host_text, "search")
    options = list(dns_options) or _field(host_text, "options")
    out = []
    # "--dns-search ." means "no search domains" in docker.
    if search and " ".join(search).strip() != ".":
        out.append("search " + " ".join(search))
    out += ["nameserver " + s for s in servers]
    if options and " ".join(options).strip():
        out.append("options " + " ".join(options))
    return "".join(line + "\n" for line in out)


EMBEDDED_DNS = "127.0.0.11"


def embedded_resolv_conf(host_text: str, dns_search: Sequence[str], dns_options: Sequence[str]) -> str:
    """docker's resolv.conf on a user-defined network: the host's (or the options') search and
    options, `nameserver 127.0.0.11`, and `ndots:0` unless an ndots option is given."""
    search = list(dns_search) or _field(host_text, "search")
    options = list(dns_options) or _field(host_text, "options")
    if not any(o.startswith("ndots:") for o in options):
        options.append("ndots:0")
    out = []
    if search and " ".join(search).strip() != ".":
        out.append("search " + " ".join(search))
    out.append(f"nameserver {EMBEDDED_DNS}")
    out.append("options " + " ".join(options))
    return "".join(line + "\n" for line in out)


def _host_record(entry: str, gateway: str | None) -> tuple[str, str]:
    name, sep, ip = entry.partition(":")
    if not sep or not name or not ip:
        raise InvalidParameter(f"invalid extra host entry {entry!r}: want HOST:IP")
    if ip == "host-gateway":
        if not gateway:
            raise InvalidParameter("unable to derive the IP value for host-gateway")
        ip = gateway
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise InvalidParameter(f"invalid IP address in add-host: {ip!r}") from None
    return name, ip


def _host_resolv(path: str) -> str:
    text = _read(path)
    servers = _nameservers(text)
    # A host on systemd-resolved lists only its 127.0.0.53 stub; the real upstreams are here.
    if servers and all(_is_loopback(s) for s in servers) and os.path.exists(RESOLVED_UPSTREAM):
        return _read(RESOLVED_UPSTREAM)
    return text


def _nameservers(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 2 and f[0] == "nameserver":
            out.append(f[1])
    return out


def _field(text: str, key: str) -> list[str]:
    """The last `search`/`options` line's values (docker's reading: a later line wins)."""
    values: list[str] = []
    for line in text.splitlines():
        f = line.split()
        if f and f[0] == key:
            values = f[1:]
    return values


def _is_loopback_ns(line: str) -> bool:
    f = line.split()
    return len(f) == 2 and f[0] == "nameserver" and _is_loopback(f[1])


def _is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def read_host_resolv_conf() -> str:
    return _read(HOST_RESOLV_CONF)


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def _write(path: str, text: str) -> None:
    """Write via a temp file and rename so a reader never sees a half-written file."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the container's non-root users must read it
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def host_hostname() -> str:
    """The host's hostname, which docker gives a `--network host` container."""
    return socket.gethostname()
