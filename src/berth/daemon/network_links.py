"""Legacy links (`--link name:alias`) on the default bridge: checked at create, turned into
/etc/hosts lines and environment variables at start, kept in the parents' /etc/hosts as the
linked containers come and go, and removed by `rm --link`.

On a user-defined network a link is only an alias the built-in DNS answers (network_dns.py).
"""

from __future__ import annotations

import os

from berth.common.errors import InvalidParameter, NotFound

from .model import Container
from .network_state import Network, NetworkState


class LegacyLinks:
    def __init__(self, state: NetworkState) -> None:
        self.state = state

    def register_links(self, c: Container) -> list[str] | None:
        """At create, as dockerd: each linked container must exist; on the default bridge the links
        are kept in dockerd's form `/child:/parent/alias`."""
        links = [str(x) for x in c.host_config.get("Links") or ()]
        if not links:
            return None
        mode = c.host_config.get("NetworkMode") or "default"
        if mode == "host":
            raise InvalidParameter("conflicting options: host type networking can't be used with links. "
                                   "This would result in undefined behavior")
        if mode not in ("default", "bridge") or self.state.lookup is None:
            return links
        out = []
        for link in links:
            name, alias = parse_link(link)
            try:
                child = self.state.lookup(name)
            except NotFound:
                raise InvalidParameter(f"could not get container for {name}") from None
            out.append(f"/{child.name}:/{c.name}/{alias}")
        return out

    def hosts_and_env(self, c: Container, nets: list[tuple[str, Network]]) -> tuple[list[tuple[str, str]], list[str]]:
        """/etc/hosts lines and environment of `--link name:alias` on the default bridge (on a
        user-defined network a link is an alias the built-in DNS answers for this container only)."""
        links = c.host_config.get("Links") or ()
        if not links or self.state.lookup is None:
            return [], []
        default = next((n for _, n in nets if n.predefined), None)
        hosts: list[tuple[str, str]] = []
        env: list[str] = []
        for link in links:
            name, alias = parse_link(str(link))
            try:
                child = self.state.lookup(name)
            except NotFound:
                raise InvalidParameter(f"could not get container for {name}") from None
            if not child.running:
                raise InvalidParameter(f"Cannot link to a non running container: /{child.name} AS "
                                       f"/{c.name}/{alias}")
            if default is None:
                continue
            view = next((v for v in child.networks.values() if v.get("NetworkID") == default.id), None)
            if view is None or not view.get("IPAddress"):
                raise InvalidParameter(f"Cannot link to /{child.name}, as it does not belong to the default "
                                       "network")
            ip = str(view["IPAddress"])
            names = [alias, child.config.get("Hostname") or ""]
            if alias != child.name:
                names.append(child.name)
            hosts.append((" ".join(x for x in names if x), ip))
            env += link_env(alias, f"/{c.name}/{alias}", ip, list(child.config.get("ExposedPorts") or {}),
                            child.config.get("Env") or [])
        return hosts, env

    def link_target(self, parent: Container, alias: str) -> str:
        """The id of the container that `parent` links to as `alias` (docker's `/parent/alias`
        name); 404 as dockerd's name lookup when there is no such link."""
        for link in parent.host_config.get("Links") or ():
            child, a = parse_link(str(link))
            if a == alias and self.state.lookup is not None:
                try:
                    return self.state.lookup(child).id
                except NotFound:
                    break
        raise NotFound(f"No such container: {parent.name}/{alias}")

    def unlink(self, parent: Container, alias: str) -> None:
        """`rm --link parent/alias`: the link goes from the parent's record (inspect's
        HostConfig.Links) and, as dockerd, from a running parent's /etc/hosts (its environment
        keeps the variables: a process's environment cannot change)."""
        self.link_target(parent, alias)
        keep = [x for x in parent.host_config.get("Links") or () if parse_link(str(x))[1] != alias]
        parent.host_config["Links"] = keep or None
        if parent.running and self.state.container_dir is not None:
            rewrite_hosts(os.path.join(self.state.container_dir(parent), "hosts"), [alias], None)

    def update_parents(self, child: Container) -> None:
        """A linked container started with a new address on the default bridge: its running parents'
        /etc/hosts lines for it follow, as dockerd's `OptionParentUpdate` (line by first name)."""
        if self.state.all_containers is None or self.state.container_dir is None:
            return
        ip = next((str(v.get("IPAddress")) for k, v in child.networks.items()
                   if v.get("IPAddress") and (n := self.state.nets.get(str(v.get("NetworkID")))) and n.predefined), "")
        if not ip:
            return
        for parent in self.state.all_containers():
            if parent.id == child.id or not parent.running:
                continue
            aliases = [a for name, a in (parse_link(str(x)) for x in parent.host_config.get("Links") or ())
                       if name == child.name]
            if aliases:
                rewrite_hosts(os.path.join(self.state.container_dir(parent), "hosts"), aliases, ip)


def parse_link(link: str) -> tuple[str, str]:
    """`name:alias`, `name`, or dockerd's stored form `/name:/parent/alias` -> (name, alias)."""
    name, _, alias = link.partition(":")
    name = name.strip("/")
    alias = alias.rsplit("/", 1)[-1] if alias else name
    return name, alias



def link_env(alias: str, link_name: str, ip: str, exposed: list[str], child_env: list[str]) -> list[str]:
    """docker's legacy link variables (moby daemon/links/links.go `ToEnv`)."""
    prefix = alias.upper().replace("-", "_")
    ports: list[tuple[int, str]] = []
    for key in exposed:
        p, _, proto = str(key).partition("/")
        if p.isdigit():
            ports.append((int(p), (proto or "tcp").lower()))
    ports.sort(key=lambda x: (x[0], x[1] != "tcp"))
    env: list[str] = []
    if ports:
        p0, proto0 = ports[0]
        env.append(f"{prefix}_PORT={proto0}://{ip}:{p0}")
    i = 0
    while i < len(ports):
        j = i
        while j + 1 < len(ports) and ports[j + 1][0] == ports[j][0] + 1:
            j += 1
        if j > i + 1:
            (start, sproto), (end, eproto) = ports[i], ports[j]
            head = f"{prefix}_PORT_{start}_{sproto.upper()}"
            env += [f"{head}_START={sproto}://{ip}:{start}", f"{head}_ADDR={ip}", f"{head}_PROTO={sproto}",
                    f"{head}_PORT_START={start}",
                    f"{prefix}_PORT_{start}_{eproto.upper()}_END={eproto}://{ip}:{end}",
                    f"{prefix}_PORT_{start}_{eproto.upper()}_PORT_END={end}"]
            i = j + 1
        else:
            i += 1
    for num, proto in ports:
        head = f"{prefix}_PORT_{num}_{proto.upper()}"
        env += [f"{head}={proto}://{ip}:{num}", f"{head}_ADDR={ip}", f"{head}_PORT={num}", f"{head}_PROTO={proto}"]
    env.append(f"{prefix}_NAME={link_name}")
    for var in child_env:
        key, eq, value = var.partition("=")
        if eq and key not in ("HOME", "PATH"):
            env.append(f"{prefix}_ENV_{key}={value}")
    return env



def rewrite_hosts(path: str, aliases: list[str], ip: str | None) -> None:
    """Give the lines whose first name is one of `aliases` the address `ip` (None: drop them). In
    place, not by rename: the file is bind-mounted into the container, which would keep the old
    inode."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines(keepends=True)
    except OSError:
        return
    out = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and fields[1] in aliases and not line.lstrip().startswith("#"):
            if ip is None:
                continue
            line = f"{ip}\t{' '.join(fields[1:])}\n"
        out.append(line)
    if out != lines:
        with open(path, "w", encoding="utf-8") as f:
            f.write("".join(out))

