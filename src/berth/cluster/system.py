"""The manager's system, image and volume backends: cluster-wide views over the nodes.

`info` lists the nodes as classic Swarm did (SystemStatus pairs with ` └ ` sub-entries);
image pulls, loads and removals fan out to every healthy node.
"""

from __future__ import annotations

import asyncio
import os
import platform
import socket
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from berth import __version__
from berth.api.http.router import API_VERSION, MIN_API_VERSION
from berth.client.stream import iter_json
from berth.cluster.manager import Manager
from berth.cluster.store import NodeRecord
from berth.cluster.streams import from_thread, shutdown_response
from berth.cluster.view import call_node
from berth.common.errors import BerthError, NotFound, NotImplementedYet


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.4g} {unit}"
        n /= 1024
    return f"{n} B"


class SystemProxy:
    def __init__(self, manager: Manager) -> None:
        self.m = manager
        self.view = manager.view

    def version(self) -> dict[str, Any]:
        return {"Version": f"berth-cluster/{__version__}", "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
                "Os": "linux", "Arch": platform.machine(), "KernelVersion": platform.release(),
                "GoVersion": f"python{platform.python_version()}", "GitCommit": "", "BuildTime": "",
                "Components": [{"Name": "berth-cluster", "Version": __version__, "Details": {}}]}

    def info(self) -> dict[str, Any]:
        nodes = self.view.nodes()
        healthy = [n for n, ok in nodes if ok]
        records = self.m.store.containers()
        listings = dict((n.name, lst) for n, lst in self.view.listings(healthy))
        images = {}
        for _n, res in self.view.each(healthy, lambda c, _n: c.images.list()):
            if isinstance(res, list):
                images.update({i["Id"]: i for i in res})
        status: list[list[str]] = [
            ["Role", "primary" if self.m.is_leader else "replica"],
            ["Primary", self.m.leader_address() or "none"],
            ["Strategy", self.m.strategy],
            ["Filters", ", ".join(f.name for f in self.m.filters)],
            ["Nodes", str(len(nodes))],
        ]
        totals = {"running": 0, "paused": 0, "stopped": 0}
        for n, ok in nodes:
            listing = listings.get(n.name, [])
            running = sum(1 for c in listing if c.get("State") == "running")
            paused = sum(1 for c in listing if c.get("State") == "paused")
            stopped = len(listing) - running - paused
            totals["running"] += running
            totals["paused"] += paused
            totals["stopped"] += stopped
            mine = [r for r in records if r.node == n.name]
            labels = {"kernelversion": n.kernel_version, "operatingsystem": n.operating_system,
                      "storagedriver": n.storage_driver, **n.labels}
            status += [
                [f" {n.name}", n.address],
                ["  └ ID", n.engine_id],
                ["  └ Status", "Healthy" if ok and n.name in listings else "Unhealthy"],
                ["  └ Containers", f"{len(listing)} ({running} Running, {paused} Paused, {stopped} Stopped)"],
                ["  └ Reserved CPUs", f"{sum(r.cpus for r in mine):g} / {n.ncpu}"],
                ["  └ Reserved Memory", f"{_size(sum(r.memory for r in mine))} / {_size(n.memory)}"],
                ["  └ Labels", ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))],
                ["  └ UpdatedAt", datetime.fromtimestamp(n.updated_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")],
                ["  └ ServerVersion", n.server_version],
            ]
        return {
            "ID": self.m.id, "Name": socket.gethostname(), "ServerVersion": f"berth-cluster/{__version__}",
            "Containers": sum(totals.values()), "ContainersRunning": totals["running"],
            "ContainersPaused": totals["paused"], "ContainersStopped": totals["stopped"],
            "Images": len(images), "Driver": "", "DriverStatus": [], "SystemStatus": status,
            "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null", "overlay"], "Log": ["json-file"]},
            "MemoryLimit": True, "SwapLimit": True, "CpuCfsPeriod": True, "CpuCfsQuota": True,
            "IPv4Forwarding": True, "Debug": False, "NFd": 0, "NGoroutines": 0,
            "SystemTime": datetime.now(UTC).isoformat(), "LoggingDriver": "json-file",
            "CgroupDriver": "cgroupfs", "NEventsListener": 0, "KernelVersion": platform.release(),
            "OperatingSystem": "berth cluster", "OSType": "linux", "Architecture": platform.machine(),
            "NCPU": sum(n.ncpu for n in healthy), "MemTotal": sum(n.memory for n in healthy),
            "IndexServerAddress": "https://index.docker.io/v1/", "RegistryConfig": {},
            "DockerRootDir": "", "HttpProxy": "", "HttpsProxy": "", "NoProxy": "", "Labels": [],
            "ExperimentalBuild": False, "Runtimes": {"runc": {"path": "runc"}}, "DefaultRuntime": "runc",
            "Swarm": {"LocalNodeState": "inactive", "NodeID": "", "NodeAddr": "", "ControlAvailable": False,
                      "Error": "", "RemoteManagers": None},
            "LiveRestoreEnabled": True, "Isolation": "", "InitBinary": "", "SecurityOptions": [],
            "Warnings": [],
        }

    async def events(self, since: float | None, until: float | None,
                     filters: dict[str, list[str]]) -> AsyncIterator[dict[str, Any]]:
        """Every healthy node's events, each with the node it came from (as Swarm added)."""
        nodes = await asyncio.to_thread(self.view.healthy)
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        async def follow(n: NodeRecord) -> None:
            client = self.view.client(n, timeout=None)
            try:
                resp = await asyncio.to_thread(call_node, lambda: client.system.events(
                    str(since) if since is not None else None, str(until) if until is not None else None,
                    filters or None))
                async for ev in from_thread(iter_json(resp), lambda: shutdown_response(resp)):
                    ev["node"] = {"Name": n.name, "Id": n.engine_id, "Addr": n.address, "Ip": ""}
                    await queue.put(ev)
            except BerthError:
                pass
            finally:
                await queue.put(None)

        tasks = [asyncio.get_running_loop().create_task(follow(n)) for n in nodes]
        try:
            remaining = len(tasks)
            while remaining:
                ev = await queue.get()
                if ev is None:
                    remaining -= 1
                    continue
                yield ev
        finally:
            for t in tasks:
                t.cancel()

    def df(self) -> dict[str, Any]:
        return {"LayersSize": 0, "Images": [], "Containers": [], "Volumes": [], "BuildCache": []}


class ImageProxy:
    def __init__(self, manager: Manager) -> None:
        self.view = manager.view

    def list_images(self, all_: bool, filters: dict[str, list[str]], digests: bool) -> list[dict[str, Any]]:
        merged: dict[str, dict[str, Any]] = {}
        for _n, res in self.view.each(self.view.healthy(), lambda c, _n: c.images.list(all_, filters or None, digests)):
            if isinstance(res, list):
                for img in res:
                    merged.setdefault(img["Id"], img)
        return sorted(merged.values(), key=lambda i: i.get("Created", 0), reverse=True)

    def _first(self, fn: Any, name: str) -> Any:
        for _n, res in self.view.each(self.view.healthy(), fn):
            if not isinstance(res, Exception):
                return res
        raise NotFound(f"No such image: {name}")

    def inspect(self, name: str) -> dict[str, Any]:
        return dict(self._first(lambda c, _n: c.images.inspect(name), name))

    def history(self, name: str) -> list[dict[str, Any]]:
        return list(self._first(lambda c, _n: c.images.history(name), name))

    def tag(self, name: str, repo: str, tag: str | None) -> None:
        results = self.view.each(self.view.healthy(), lambda c, _n: c.images.tag(name, repo, tag))
        if not any(not isinstance(r, Exception) for _n, r in results):
            raise NotFound(f"No such image: {name}")

    async def delete(self, name: str, force: bool, prune: bool) -> list[dict[str, str]]:
        results = await asyncio.to_thread(self.view.each, self.view.healthy(),
                                          lambda c, _n: c.images.remove(name, force=force, noprune=not prune))
        out: list[dict[str, str]] = []
        errors = []
        for _n, r in results:
            if isinstance(r, Exception):
                errors.append(r)
            else:
                out += [e for e in r if e not in out]
        if not out and errors:
            raise call_error(errors[0])
        return out

    async def load(self, body: AsyncIterator[bytes], quiet: bool) -> AsyncIterator[dict[str, Any]]:
        # Buffered to a file once, then sent to every node in parallel.
        fd, path = tempfile.mkstemp(prefix="berth-cluster-load-")
        try:
            with os.fdopen(fd, "wb") as f:
                async for chunk in body:
                    f.write(chunk)

            def one(c: Any, _n: NodeRecord) -> list[Any]:
                with open(path, "rb") as tar:
                    return list(iter_json(c.images.load(tar, quiet)))
            results = await asyncio.to_thread(self.view.each, self.view.healthy(), one)
        finally:
            os.unlink(path)
        for n, r in results:
            if isinstance(r, Exception):
                yield {"errorDetail": {"message": str(r)}, "error": f"{n.name}: {r}"}
                continue
            for msg in r:
                if "stream" in msg:
                    msg["stream"] = f"{n.name}: {msg['stream']}"
                yield msg

    def save(self, names: list[str]) -> AsyncIterator[bytes]:
        raise NotImplementedYet("image save through the cluster manager: save from a node")

    def import_image(self, src: str, body: AsyncIterator[bytes], repo: str, tag: str,
                     changes: list[str], message: str) -> AsyncIterator[dict[str, Any]]:
        raise NotImplementedYet("image import through the cluster manager: import on a node")

    async def pull(self, image: str, tag: str, platform: str, auth: str | None = None
                   ) -> AsyncIterator[dict[str, Any]]:
        """Pull on every healthy node at once; progress lines name their node."""
        nodes = await asyncio.to_thread(self.view.healthy)
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        params = {"fromImage": image, "tag": tag or None, "platform": platform or None}
        headers = {"X-Registry-Auth": auth} if auth else None

        async def one(n: NodeRecord) -> None:
            client = self.view.client(n, timeout=None)
            try:
                resp = await asyncio.to_thread(call_node, lambda: client.request(
                    "POST", "/images/create", params=params, headers=headers, stream=True))
                async for msg in from_thread(iter_json(resp), lambda: shutdown_response(resp)):
                    if "status" in msg:
                        msg["status"] = f"{n.name}: {msg['status']}"
                    await queue.put(msg)
            except BerthError as e:
                await queue.put({"errorDetail": {"message": e.message}, "error": f"{n.name}: {e.message}"})
            finally:
                await queue.put(None)

        tasks = [asyncio.get_running_loop().create_task(one(n)) for n in nodes]
        remaining = len(tasks)
        while remaining:
            msg = await queue.get()
            if msg is None:
                remaining -= 1
            else:
                yield msg

    async def prune(self, filters: dict[str, list[str]]) -> dict[str, Any]:
        results = await asyncio.to_thread(self.view.each, self.view.healthy(),
                                          lambda c, _n: c.images.prune(filters or None))
        deleted: list[Any] = []
        space = 0
        for _n, r in results:
            if isinstance(r, dict):
                deleted += r.get("ImagesDeleted") or []
                space += int(r.get("SpaceReclaimed") or 0)
        return {"ImagesDeleted": deleted or None, "SpaceReclaimed": space}


def call_error(e: Exception) -> BerthError:
    from berth.cluster.view import node_error

    return node_error(e)


class VolumeProxy:
    """Volumes are per node: created everywhere (a container may land anywhere), listed as `node/name`."""

    def __init__(self, manager: Manager) -> None:
        self.view = manager.view

    def list_volumes(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        vols = []
        for n, res in self.view.each(self.view.healthy(), lambda c, _n: c.volumes.list(filters or None)):
            if isinstance(res, dict):
                for v in res.get("Volumes") or []:
                    v["Name"] = f"{n.name}/{v['Name']}"
                    vols.append(v)
        return vols

    def _split(self, name: str) -> tuple[list[NodeRecord], str]:
        node, sep, rest = name.partition("/")
        healthy = self.view.healthy()
        if sep and any(n.name == node for n in healthy):
            return [n for n in healthy if n.name == node], rest
        return healthy, name

    def create(self, name: str, driver: str, options: dict[str, str], labels: dict[str, str]) -> dict[str, Any]:
        nodes, name = self._split(name)
        results = self.view.each(nodes, lambda c, _n: c.volumes.create(name, driver, options, labels))
        for _n, r in results:
            if isinstance(r, Exception):
                raise call_error(r)
        first = results[0][1] if results else {}
        return dict(first) if isinstance(first, dict) else {}

    def inspect(self, name: str) -> dict[str, Any]:
        nodes, name = self._split(name)
        for _n, r in self.view.each(nodes, lambda c, _n: c.volumes.inspect(name)):
            if isinstance(r, dict):
                return r
        raise NotFound(f"get {name}: no such volume")

    def remove(self, name: str, force: bool) -> None:
        nodes, name = self._split(name)
        results = self.view.each(nodes, lambda c, _n: c.volumes.remove(name, force))
        if all(isinstance(r, Exception) for _n, r in results) and results:
            raise call_error(results[0][1])  # type: ignore[arg-type]

    def prune(self, filters: dict[str, list[str]], all_: bool) -> dict[str, Any]:
        deleted: list[str] = []
        space = 0
        for _n, r in self.view.each(self.view.healthy(), lambda c, _n: c.volumes.prune(filters or None)):
            if isinstance(r, dict):
                deleted += r.get("VolumesDeleted") or []
                space += int(r.get("SpaceReclaimed") or 0)
        return {"VolumesDeleted": deleted, "SpaceReclaimed": space}


class NoBuilds:
    """The manager does not build: a node's build would leave the image on that node alone."""

    async def build(self, opts: Any, body: AsyncIterator[bytes]) -> AsyncIterator[dict[str, Any]]:
        async for _chunk in body:  # read the context, so the client hears the answer, not a reset
            pass
        raise NotImplementedYet(
            "the cluster manager does not build images: a cluster needs a pushed image. Build it on an "
            "engine, push it to a registry every node reaches, and name it in the service's `image:` "
            f"(tags asked for: {', '.join(getattr(opts, 'tags', []) or []) or 'none'})")
        yield {}  # an async generator: the error comes on the first read

    def prune_cache(self) -> dict[str, Any]:
        return {"CachesDeleted": None, "SpaceReclaimed": 0}
