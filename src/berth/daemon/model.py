"""The container record: what berth knows of one container, and its Engine API shapes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from berth.common.errors import InvalidParameter
from berth.common.humanize import human_duration
from berth.common.timefilter import until_filter

ZERO_TIME = "0001-01-01T00:00:00Z"


def now_rfc3339() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1e9):09d}Z"


def prune_until(filters: dict[str, list[str]]) -> float | None:
    """A prune's `until` filter (docker's timestamp, date or duration) as Unix seconds."""
    try:
        return until_filter(filters)
    except ValueError as e:
        raise InvalidParameter(str(e)) from None


def rfc3339_to_unix(ts: str) -> float:
    from berth.runtime.logs import parse_time

    if not ts or ts.startswith("0001-"):
        return 0.0
    return parse_time(ts)


def fresh_state() -> dict[str, Any]:
    return {"Status": "created", "Running": False, "Paused": False, "Restarting": False,
            "OOMKilled": False, "Dead": False, "Pid": 0, "ExitCode": 0, "Error": "",
            "StartedAt": ZERO_TIME, "FinishedAt": ZERO_TIME}


@dataclass
class Container:
    id: str
    name: str                       # without the leading slash
    created: str
    image: str                      # as the user named it
    image_id: str
    top_chain: str | None           # the layer the writable layer stands on
    path: str
    args: list[str]
    config: dict[str, Any]
    host_config: dict[str, Any]
    state: dict[str, Any] = field(default_factory=fresh_state)
    restart_count: int = 0
    conmon_pid: int = 0
    runtime: str = "runc"
    networks: dict[str, Any] = field(default_factory=dict)
    ports: dict[str, Any] = field(default_factory=dict)  # NetworkSettings.Ports while running
    mounts: list[dict[str, Any]] = field(default_factory=list)  # see daemon/mounts.py
    # Set by stop/kill so the restart policy leaves the container down (persisted: a restarted
    # berthd starts `unless-stopped` containers only if the user did not stop them).
    stopped_by_user: bool = field(default=False, repr=False)
    # Not persisted: the backoff of the next automatic restart.
    restart_delay: float = field(default=0.0, repr=False)
    # Not persisted: wakes waiters and log followers.
    exited: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    removed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    busy: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    # Streams following the log (attach, logs -f); removal waits for them to read the end.
    followers: int = field(default=0, repr=False)
    followers_gone: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    PERSISTED = ("id", "name", "created", "image", "image_id", "top_chain", "path", "args", "config",
                 "host_config", "state", "restart_count", "conmon_pid", "runtime", "networks",
                 "mounts", "stopped_by_user", "ports")

    def to_record(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.PERSISTED}

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Container:
        return cls(**{k: rec[k] for k in cls.PERSISTED if k in rec})

    @contextlib.contextmanager
    def following(self) -> Iterator[None]:
        self.followers += 1
        self.followers_gone.clear()
        try:
            yield
        finally:
            self.followers -= 1
            if self.followers == 0:
                self.followers_gone.set()

    @property
    def running(self) -> bool:
        return bool(self.state["Running"])

    @property
    def tty(self) -> bool:
        return bool(self.config.get("Tty"))

    def status_word(self) -> str:
        """Docker's State.Status."""
        return self.state["Status"]

    def human_status(self) -> str:
        """`Up 3 seconds`, `Exited (0) 2 minutes ago`, `Created`: ps's STATUS column."""
        st = self.state
        if st["Running"]:
            up = human_duration(time.time() - rfc3339_to_unix(st["StartedAt"]))
            if st["Paused"]:
                return f"Up {up} (Paused)"
            if st["Restarting"]:
                return f"Restarting ({st['ExitCode']}) {up} ago"
            health = (st.get("Health") or {}).get("Status")
            if health:
                return f"Up {up} ({'health: ' if health == 'starting' else ''}{health})"
            return f"Up {up}"
        if st["Status"] == "removing":
            return "Removal In Progress"
        if st["Dead"]:
            return "Dead"
        if st["StartedAt"] == ZERO_TIME:
            return "Created"
        if st["FinishedAt"] == ZERO_TIME:
            return ""
        ago = human_duration(time.time() - rfc3339_to_unix(st["FinishedAt"]))
        return f"Exited ({st['ExitCode']}) {ago} ago"

    def mounts_view(self) -> list[dict[str, Any]]:
        from .mounts import api_view

        return [api_view(mp) for mp in self.mounts]

    def network_settings(self) -> dict[str, Any]:
        # As dockerd: the top-level fields describe the default bridge network only.
        br = self.networks.get("bridge") or {}
        return {
            "Bridge": "", "SandboxID": "", "HairpinMode": False, "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0, "Ports": self.ports, "SandboxKey": "", "SecondaryIPAddresses": None,
            "SecondaryIPv6Addresses": None, "EndpointID": br.get("EndpointID", ""),
            "Gateway": br.get("Gateway", ""), "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "IPAddress": br.get("IPAddress", ""), "IPPrefixLen": br.get("IPPrefixLen", 0), "IPv6Gateway": "",
            "MacAddress": br.get("MacAddress", ""), "Networks": self.networks,
        }

    def inspect(self, graph_driver: dict[str, Any], log_path: str, resolv: str, hostname_path: str,
                hosts_path: str, size: dict[str, int] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "Id": self.id,
            "Created": self.created,
            "Path": self.path,
            "Args": self.args,
            "State": dict(self.state),
            "Image": self.image_id,
            "ResolvConfPath": resolv,
            "HostnamePath": hostname_path,
            "HostsPath": hosts_path,
            "LogPath": log_path,
            "Name": "/" + self.name,
            "RestartCount": self.restart_count,
            "Driver": "overlay2",
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "ExecIDs": None,
            "HostConfig": self.host_config,
            "GraphDriver": graph_driver,
            "Mounts": self.mounts_view(),
            "Config": self.config,
            "NetworkSettings": self.network_settings(),
        }
        if size is not None:
            out.update(size)
        return out

    def summary(self, image_display: str) -> dict[str, Any]:
        # as dockerd's list: an argument with a space in it is shown in single quotes
        command = " ".join([self.path, *(f"'{a}'" if " " in a else a for a in self.args)]) if self.path else ""
        return {
            "Id": self.id,
            "Names": ["/" + self.name],
            "Image": image_display,
            "ImageID": self.image_id,
            "Command": command,
            "Created": int(rfc3339_to_unix(self.created)),
            "Ports": ps_ports(self.ports),
            "Labels": self.config.get("Labels") or {},
            "State": self.state["Status"],
            "Status": self.human_status(),
            "HostConfig": {"NetworkMode": self.host_config.get("NetworkMode", "default")},
            "NetworkSettings": {"Networks": self.networks},
            "Mounts": self.mounts_view(),
        }


def ps_ports(ports: dict[str, Any]) -> list[dict[str, Any]]:
    """`ps`'s Ports from NetworkSettings.Ports: one entry per binding, or the bare exposed port."""
    out: list[dict[str, Any]] = []
    for key, binds in ports.items():
        port, _, proto = key.partition("/")
        if not binds:
            out.append({"PrivatePort": int(port), "Type": proto or "tcp"})
            continue
        for b in binds:
            out.append({"IP": b["HostIp"], "PrivatePort": int(port), "PublicPort": int(b["HostPort"]),
                        "Type": proto or "tcp"})
    return out
