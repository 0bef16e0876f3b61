"""The manager's container and exec backends: schedule creates, route everything else to the node
that holds the container (through berth's client), and aggregate listings as classic Swarm did."""

from __future__ import annotations

import asyncio
import fnmatch
from collections.abc import Awaitable, Callable
from typing import Any

from berth.api.http.server import RawStream
from berth.api.routes.containers import AttachOptions, LogOptions, Output
from berth.client.stream import iter_frames, iter_raw
from berth.cluster.manager import Manager
from berth.cluster.networks import place_on_local_network
from berth.cluster.store import NodeRecord
from berth.cluster.streams import from_thread, in_daemon_thread, shutdown_response, splice
from berth.cluster.view import Located, call_node
from berth.common.errors import NotFound


def _node_info(n: NodeRecord) -> dict[str, Any]:
    return {"ID": n.engine_id, "IP": "", "Addr": n.address, "Name": n.name, "Cpus": n.ncpu,
            "Memory": n.memory, "Labels": dict(n.labels)}


class ContainerProxy:
    # `docker ps --filter node=...` as classic Swarm had it (checked here, not sent to nodes).
    extra_filters = {"node"}

    def __init__(self, manager: Manager) -> None:
        self.m = manager
        self.view = manager.view

    def _locate(self, ref: str) -> Located:
        return self.view.locate(ref)

    async def _on_node(self, ref: str, fn: Callable[[Any, str], Any]) -> tuple[Located, Any]:
        def run() -> tuple[Located, Any]:
            loc = self._locate(ref)
            client = self.view.client(loc.node)
            return loc, call_node(lambda: fn(client, loc.id))
        return await asyncio.to_thread(run)

    async def create(self, body: Any, name: str | None) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            return self.m.create(place_on_local_network(self.view, body), name)
        return await asyncio.to_thread(run)

    async def start(self, ref: str) -> None:
        loc, _ = await self._on_node(ref, lambda c, i: c.containers.start(i))
        await asyncio.to_thread(self.m.mark, loc.summary, "started")

    async def stop(self, ref: str, timeout: int | None, signal: str | None) -> None:
        loc, _ = await self._on_node(ref, lambda c, i: c.containers.stop(i, timeout, signal))
        await asyncio.to_thread(self.m.mark, loc.summary, "created")

    async def restart(self, ref: str, timeout: int | None, signal: str | None) -> None:
        loc, _ = await self._on_node(ref, lambda c, i: c.containers.restart(i, timeout, signal))
        await asyncio.to_thread(self.m.mark, loc.summary, "started")

    async def kill(self, ref: str, signal: str | None) -> None:
        await self._on_node(ref, lambda c, i: c.containers.kill(i, signal))

    async def remove(self, ref: str, force: bool, volumes: bool) -> None:
        loc, _ = await self._on_node(ref, lambda c, i: c.containers.remove(i, force=force, v=volumes))
        await asyncio.to_thread(self.m.forget, loc.summary)

    async def remove_link(self, parent: str, alias: str, link: bool, force: bool, volumes: bool) -> None:
        await self._on_node(parent, lambda c, i: c.call(
            "DELETE", f"/containers/{i}/{alias}", params={"link": link or None, "force": force or None,
                                                         "v": volumes or None}))

    def ps(self, all_: bool, limit: int, size: bool, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        filters = dict(filters)
        wanted = filters.pop("node", [])
        nodes = [n for n in self.view.healthy()
                 if not wanted or any(fnmatch.fnmatchcase(n.name, w) or n.engine_id == w for w in wanted)]
        out = []
        for n, listing in self.view.listings(nodes, all_=all_ or limit > 0, filters=filters or None):
            for c in listing:
                c["Names"] = [f"/{n.name}{name}" for name in c.get("Names") or []]
                out.append(c)
        out.sort(key=lambda c: c.get("Created", 0), reverse=True)
        return out[:limit] if limit > 0 else out

    def inspect(self, ref: str, size: bool) -> dict[str, Any]:
        loc = self._locate(ref)
        out: dict[str, Any] = call_node(lambda: self.view.client(loc.node).containers.inspect(loc.id, size))
        out["Node"] = _node_info(loc.node)
        return out

    def logs(self, ref: str, opts: LogOptions) -> tuple[bool, Output]:
        loc = self._locate(ref)
        info = call_node(lambda: self.view.client(loc.node).containers.inspect(loc.id))
        tty = bool((info.get("Config") or {}).get("Tty"))
        resp = call_node(lambda: self.view.client(loc.node, timeout=None).containers.logs(
            loc.id, stdout=opts.stdout, stderr=opts.stderr, follow=opts.follow,
            since=str(opts.since) if opts.since else None, until=str(opts.until) if opts.until else None,
            timestamps=opts.timestamps, tail=None if opts.tail < 0 else str(opts.tail)))
        it = ((1, chunk) for chunk in iter_raw(resp)) if tty else iter_frames(resp)
        return tty, from_thread(it, lambda: shutdown_response(resp))

    def wait(self, ref: str, condition: str) -> Awaitable[int]:
        loc = self._locate(ref)
        client = self.view.client(loc.node, timeout=None)

        def waited() -> int:
            return int(call_node(lambda: client.containers.wait(loc.id, condition or None)).get("StatusCode", 0))
        return in_daemon_thread(waited)

    def rename(self, ref: str, name: str) -> None:
        loc = self._locate(ref)
        call_node(lambda: self.view.client(loc.node).containers.rename(loc.id, name))

    async def top(self, ref: str, ps_args: str) -> dict[str, Any]:
        _, out = await self._on_node(ref, lambda c, i: c.containers.top(i, ps_args or None))
        return dict(out)

    async def changes(self, ref: str) -> list[dict[str, Any]] | None:
        _, out = await self._on_node(ref, lambda c, i: c.containers.changes(i))
        return list(out)

    def attach(self, ref: str, opts: AttachOptions) -> tuple[bool, Callable[[RawStream], Awaitable[None]]]:
        loc = self._locate(ref)
        client = self.view.client(loc.node, timeout=None)
        info = call_node(lambda: client.containers.inspect(loc.id))
        # Attached upstream now, before the client's 101: `docker run` starts the container
        # right after, and output from before the node's attach would be lost.
        sock, leftover = call_node(lambda: client.containers.attach(
            loc.id, stream=opts.stream, stdin=opts.stdin, stdout=opts.stdout, stderr=opts.stderr,
            logs=opts.logs, detach_keys=opts.detach_keys))

        async def run(stream: RawStream) -> None:
            await splice(stream, sock, leftover, stdin=opts.stdin)
        return bool((info.get("Config") or {}).get("Tty")), run

    def resize(self, ref: str, height: int, width: int) -> None:
        loc = self._locate(ref)
        call_node(lambda: self.view.client(loc.node).call(
            "POST", f"/containers/{loc.id}/resize", params={"h": height, "w": width}))

    async def pause(self, ref: str) -> None:
        await self._on_node(ref, lambda c, i: c.containers.pause(i))

    async def unpause(self, ref: str) -> None:
        await self._on_node(ref, lambda c, i: c.containers.unpause(i))

    async def prune(self, filters: dict[str, list[str]]) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            deleted: list[str] = []
            space = 0
            for _n, res in self.view.each(self.view.healthy(), lambda c, _n: c.containers.prune(filters)):
                if isinstance(res, dict):
                    deleted += res.get("ContainersDeleted") or []
                    space += int(res.get("SpaceReclaimed") or 0)
            return {"ContainersDeleted": deleted or None, "SpaceReclaimed": space}
        return await asyncio.to_thread(run)


class ExecProxy:
    """Execs live on the container's node; the manager remembers which node made each one."""

    def __init__(self, manager: Manager) -> None:
        self.view = manager.view
        self._where: dict[str, NodeRecord] = {}

    def _node(self, exec_id: str) -> NodeRecord:
        node = self._where.get(exec_id)
        if node is not None:
            return node
        for n, res in self.view.each(self.view.healthy(), lambda c, _n: c.execs.inspect(exec_id)):
            if isinstance(res, dict):
                self._where[exec_id] = n
                return n
        raise NotFound(f"No such exec instance: {exec_id}")

    def create(self, ref: str, body: Any) -> dict[str, Any]:
        loc = self.view.locate(ref)
        out: dict[str, Any] = call_node(lambda: self.view.client(loc.node).containers.exec_create(loc.id, body))
        self._where[out["Id"]] = loc.node
        return out

    def start(self, exec_id: str, detach: bool, tty: bool) -> tuple[bool, Callable[[RawStream], Awaitable[None]]]:
        client = self.view.client(self._node(exec_id), timeout=None)
        sock, leftover = call_node(lambda: client.execs.start_attached(exec_id, tty))

        async def run(stream: RawStream) -> None:
            await splice(stream, sock, leftover)
        return tty, run

    async def start_detached(self, exec_id: str) -> None:
        node = await asyncio.to_thread(self._node, exec_id)
        await asyncio.to_thread(call_node, lambda: self.view.client(node).execs.start_detached(exec_id))

    def inspect(self, exec_id: str) -> dict[str, Any]:
        node = self._node(exec_id)
        return dict(call_node(lambda: self.view.client(node).execs.inspect(exec_id)))

    def resize(self, exec_id: str, height: int, width: int) -> None:
        node = self._node(exec_id)
        call_node(lambda: self.view.client(node).call(
            "POST", f"/exec/{exec_id}/resize", params={"h": height, "w": width}))
