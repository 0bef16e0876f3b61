"""The API's SystemBackend: version, info, events, df."""

from __future__ import annotations

import os
import platform
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from berth import __version__
from berth.api.http.router import API_VERSION, MIN_API_VERSION

from .containers import ContainerService
from .events import EventBus
from .image_api import host_arch


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def _mem_total() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def cgroup_version() -> str:
    return "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"


class SystemAPI:
    def __init__(self, daemon_id: str, data_root: str, containers: ContainerService, events: EventBus,
                 labels: list[str], runtimes: dict[str, str], default_runtime: str) -> None:
        self.daemon_id = daemon_id
        self.data_root = data_root
        self.containers = containers
        self.events_bus = events
        self.labels = labels
        self.runtimes = runtimes
        self.default_runtime = default_runtime
        self.security_options: list[str] = []  # beyond seccomp's: "name=userns" under --userns-remap
        self.build_cache_usage: Callable[[], list[dict[str, Any]]] = list  # set by main to the builder's
        # set by main: `images` and `ps -a --size` as the API lists them
        self.image_summaries: Callable[[], list[dict[str, Any]]] = list
        self.container_summaries: Callable[[], list[dict[str, Any]]] = list
        self.swarm_info: Callable[[], dict[str, Any]] = lambda: {  # set by main to swarm.py's
            "NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False, "Error": "",
            "RemoteManagers": None}
        self.started = time.time()

    def version(self) -> dict[str, Any]:
        uname = os.uname()
        details = {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux",
                   "Arch": host_arch(), "KernelVersion": uname.release, "GitCommit": "berth",
                   "GoVersion": "python" + platform.python_version(), "BuildTime": "",
                   "Experimental": "false"}
        return {
            "Platform": {"Name": "berth"},
            "Components": [{"Name": "Engine", "Version": __version__, "Details": details}],
            "Version": __version__, "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": "berth", "GoVersion": details["GoVersion"], "Os": "linux", "Arch": host_arch(),
            "KernelVersion": uname.release, "BuildTime": "",
        }

    def info(self) -> dict[str, Any]:
        cs = self.containers.all()
        running = sum(1 for c in cs if c.running and not c.state["Paused"])
        paused = sum(1 for c in cs if c.state["Paused"])
        images = len(self.containers.images.all())
        uname = os.uname()
        return {
            "ID": self.daemon_id, "Containers": len(cs), "ContainersRunning": running,
            "ContainersPaused": paused, "ContainersStopped": len(cs) - running - paused, "Images": images,
            "Driver": "overlay2", "DriverStatus": [["Backing Filesystem", "extfs"],
                                                   ["Supports d_type", "true"]],
            "Plugins": {"Volume": ["local"], "Network": ["host", "null"], "Authorization": None,
                        "Log": ["json-file"]},
            "MemoryLimit": True, "SwapLimit": True, "KernelMemory": False, "KernelMemoryTCP": False,
            "CpuCfsPeriod": True, "CpuCfsQuota": True, "CPUShares": True, "CPUSet": True,
            "PidsLimit": True, "IPv4Forwarding": True, "BridgeNfIptables": False,
            "BridgeNfIp6tables": False, "Debug": False, "NFd": len(os.listdir("/proc/self/fd")),
            "OomKillDisable": True, "NGoroutines": 0, "SystemTime": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                   time.gmtime()),
            "LoggingDriver": "json-file", "CgroupDriver": "cgroupfs", "CgroupVersion": cgroup_version(),
            "NEventsListener": 0, "KernelVersion": uname.release, "OperatingSystem": _os_name(),
            "OSVersion": "", "OSType": "linux", "Architecture": uname.machine,
            "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": {"AllowNondistributableArtifactsCIDRs": [],
                               "AllowNondistributableArtifactsHostnames": [], "InsecureRegistryCIDRs":
                               ["127.0.0.0/8"], "IndexConfigs": {}, "Mirrors": []},
            "NCPU": os.cpu_count() or 1, "MemTotal": _mem_total(), "GenericResources": None,
            "DockerRootDir": self.data_root, "HttpProxy": "", "HttpsProxy": "", "NoProxy": "",
            "Name": socket.gethostname(), "Labels": list(self.labels), "ExperimentalBuild": False,
            "ServerVersion": __version__,
            "Runtimes": {name: {"path": path} for name, path in self.runtimes.items()},
            "DefaultRuntime": self.default_runtime,
            "Swarm": self.swarm_info(),
            "LiveRestoreEnabled": True, "Isolation": "", "InitBinary": "",
            "ContainerdCommit": {"ID": "", "Expected": ""}, "RuncCommit": {"ID": "", "Expected": ""},
            "InitCommit": {"ID": "", "Expected": ""},
            "SecurityOptions": ["name=seccomp,profile=default", *self.security_options], "Warnings": [],
        }

    def events(self, since: float | None, until: float | None,
               filters: dict[str, list[str]]) -> AsyncIterator[dict[str, Any]]:
        return self.events_bus.subscribe(since, until, filters)

    def df(self) -> dict[str, Any]:
        from .volume_api import volume_usage

        store = self.containers.images
        layer_sizes = store.layer_sizes()
        chains = {i.id: i.chains for i in store.all()}
        holders: dict[str, int] = {}
        for cs in chains.values():
            for chain in set(cs):
                holders[chain] = holders.get(chain, 0) + 1
        images = self.image_summaries()
        for img in images:
            # as dockerd: the bytes of layers another image has too, and who uses the image
            img["SharedSize"] = sum(layer_sizes.get(c, 0) for c in set(chains.get(img["Id"], ()))
                                    if holders.get(c, 0) > 1)
            img["Containers"] = len(self.containers.users(img["Id"]))
        return {
            "LayersSize": sum(layer_sizes.values()),  # each layer once, however many images share it
            "Images": images,
            "Containers": self.container_summaries(),
            "Volumes": volume_usage(self.containers.mounts),
            "BuildCache": self.build_cache_usage(),
        }
