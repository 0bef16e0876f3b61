"""The API's ContainerBackend over the container service: listing, logs, attach, top."""

from __future__ import annotations

import asyncio
import fnmatch
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from berth.api.http.server import RawStream
from berth.api.http.streams import frame
from berth.api.routes.containers import AttachOptions, LogOptions, Output
from berth.common.errors import Conflict, InvalidParameter, NotFound, NotImplementedYet
from berth.runtime.etcfiles import INIT_FILES
from berth.runtime.logrotate import details_prefix, extra_attributes
from berth.runtime.logs import LogReader, LogRecord, docker_timestamp

from .containers import ContainerService
from .detach import EscapeProxy, parse_keys
from .health import STATUSES as HEALTH_STATUSES
from .health import status_word as health_status
from .model import Container, prune_until, ps_ports, rfc3339_to_unix

_STREAM = {"stdout": 1, "stderr": 2}


class ContainerAPI:
    def __init__(self, svc: ContainerService) -> None:
        self.svc = svc

    # lifecycle passes straight through
    async def create(self, body: Any, name: str | None) -> dict[str, Any]:
        return await self.svc.create(body, name)

    async def start(self, ref: str) -> None:
        await self.svc.start(ref)

    async def stop(self, ref: str, timeout: int | None, signal: str | None) -> None:
        await self.svc.stop(ref, timeout, signal)

    async def restart(self, ref: str, timeout: int | None, signal: str | None) -> None:
        await self.svc.restart(ref, timeout, signal)

    async def kill(self, ref: str, signal: str | None) -> None:
        await self.svc.kill(ref, signal)

    async def remove(self, ref: str, force: bool, volumes: bool) -> None:
        await self.svc.remove(ref, force, volumes)

    async def remove_link(self, parent: str, alias: str, link: bool, force: bool, volumes: bool) -> None:
        """`DELETE /containers/parent/alias`: with `link`, the legacy link goes; without, as dockerd
        resolves the link name, the linked container itself is removed."""
        p = self.svc.get(parent)
        if self.svc.networks is None:
            raise NotFound(f"No such container: {parent}/{alias}")
        child = self.svc.networks.link_target(p, alias)
        if not link:
            await self.svc.remove(child, force, volumes)
            return
        self.svc.networks.unlink(p, alias)
        self.svc._save(p)

    def inspect(self, ref: str, size: bool) -> dict[str, Any]:
        return self.svc.inspect(ref, size)

    def rename(self, ref: str, name: str) -> None:
        self.svc.rename(ref, name)

    def wait(self, ref: str, condition: str) -> Awaitable[int]:
        c = self.svc.get(ref)
        if condition not in ("", "not-running", "next-exit", "removed"):
            raise InvalidParameter(f"invalid condition: {condition}")
        return self.svc.wait(c, condition)

    def resize(self, ref: str, height: int, width: int) -> None:
        self.svc.get(ref)

    async def pause(self, ref: str) -> None:
        c = self.svc.get(ref)
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        if c.state["Paused"]:
            raise Conflict(f"Container {c.id} is already paused")
        await self.svc.runtimes[c.runtime].pause(c.id)
        c.state.update(Paused=True, Status="paused")
        for w in self.svc.watchers:  # no probes while paused (dockerd: unhealthy meanwhile)
            w.stopped(c)
        self.svc._save(c)
        self.svc._event(c, "pause")

    async def unpause(self, ref: str) -> None:
        c = self.svc.get(ref)
        if not c.state["Paused"]:
            raise Conflict(f"Container {c.id} is not paused")
        await self.svc.runtimes[c.runtime].resume(c.id)
        c.state.update(Paused=False, Status="running")
        for w in self.svc.watchers:
            w.started(c, resumed=True)
        self.svc._save(c)
        self.svc._event(c, "unpause")

    async def prune(self, filters: dict[str, list[str]]) -> dict[str, Any]:
        until = prune_until(filters)
        deleted = []
        reclaimed = 0
        for c in self.svc.all():
            if c.running or not _label_match(c, filters.get("label", [])):
                continue
            if filters.get("label!") and _label_match(c, filters["label!"]):
                continue  # as dockerd: kept when it has every `label!` label
            if until is not None and rfc3339_to_unix(c.created) > until:
                continue  # created after `until`: kept
            size = await asyncio.to_thread(self.svc.layers.rw_usage, c.id)
            await self.svc.remove(c.id)
            deleted.append(c.id)
            reclaimed += size
        self.svc.events.publish("container", "prune", "", {"reclaimed": str(reclaimed)})
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    # --- ps --------------------------------------------------------------------------------
    def ps(self, all_: bool, limit: int, size: bool, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        for h in filters.get("health", []):
            if h not in HEALTH_STATUSES:
                raise InvalidParameter(f"Unrecognised filter value for health: {h}")
        cs = sorted(self.svc.all(), key=lambda c: c.created, reverse=True)
        if not all_ and limit <= 0 and not filters.get("status") and not filters.get("exited"):
            cs = [c for c in cs if c.running]
        cs = [c for c in cs if self._matches(c, filters)]
        if limit > 0:
            cs = cs[:limit]
        out = []
        for c in cs:
            s = c.summary(self._image_display(c))
            if size:
                info = self.svc.inspect(c.id, size=True)
                s["SizeRw"], s["SizeRootFs"] = info["SizeRw"], info["SizeRootFs"]
            out.append(s)
        return out

    def _image_display(self, c: Container) -> str:
        """ps's IMAGE: the name used at create if it still points at the image, else the ID."""
        try:
            if self.svc.images.get(c.image).id == c.image_id:
                return c.image
        except (NotFound, InvalidParameter):
            pass
        return c.image_id

    def _matches(self, c: Container, f: dict[str, list[str]]) -> bool:
        if f.get("status"):
            for s in f["status"]:
                if s not in ("created", "restarting", "running", "removing", "paused", "exited", "dead"):
                    raise InvalidParameter(f"Invalid filter 'status={s}'")
            if c.state["Status"] not in f["status"]:
                return False
        if f.get("health") and health_status(c) not in f["health"]:
            return False
        if f.get("id") and not any(c.id.startswith(v) for v in f["id"]):
            return False
        if f.get("name") and not any(_name_match(c.name, v) for v in f["name"]):
            return False
        if f.get("exited"):
            if c.running or c.state["StartedAt"].startswith("0001") or \
                    str(c.state["ExitCode"]) not in f["exited"]:
                return False
        if f.get("label") and not _label_match(c, f["label"]):
            return False
        if f.get("ancestor") and not any(self._descends(c, a) for a in f["ancestor"]):
            return False
        if f.get("volume"):
            mounts = c.mounts_view()
            if not any(m.get("Name") == v or m.get("Destination") == v for m in mounts for v in f["volume"]):
                return False
        if f.get("network"):
            wanted = set(f["network"])
            if not any(name in wanted or str(v.get("NetworkID") or "") in wanted
                       for name, v in c.networks.items()):
                return False
        if f.get("publish") or f.get("expose"):
            ports = ps_ports(c.ports)
            published = _port_set(f.get("publish", []))
            exposed = _port_set(f.get("expose", []))
            if not any(f"{p.get('PublicPort')}/{p['Type']}" in published or f"{p['PrivatePort']}/{p['Type']}" in exposed
                       for p in ports):
                return False
        for key, newer in (("since", True), ("before", False)):
            for ref in f.get(key, []):
                other = self.svc.get(ref)
                if (c.created <= other.created) if newer else (c.created >= other.created):
                    return False
        return True

    def _descends(self, c: Container, ancestor: str) -> bool:
        try:
            img = self.svc.images.get(ancestor)
        except (NotFound, InvalidParameter):
            return False
        return c.image_id == img.id

    # --- logs ------------------------------------------------------------------------------
    def _records(self, c: Container, opts: LogOptions) -> tuple[list[LogRecord], int, LogReader]:
        reader = LogReader(self.svc.log_path(c))
        streams = tuple(s for s, on in (("stdout", opts.stdout), ("stderr", opts.stderr)) if on)
        records, offset = reader.read(since=opts.since, until=opts.until, tail=opts.tail, streams=streams,
                                      flush=not c.running)
        return records, offset, reader

    def logs(self, ref: str, opts: LogOptions) -> tuple[bool, Output]:
        c = self.svc.get(ref)
        if (c.host_config.get("LogConfig") or {}).get("Type") == "none":
            raise NotImplementedYet("configured logging driver does not support reading")
        records, offset, reader = self._records(c, opts)
        streams = tuple(s for s, on in (("stdout", opts.stdout), ("stderr", opts.stderr)) if on)

        details = b""
        if opts.details:
            lc = c.host_config.get("LogConfig") or {}
            attrs = extra_attributes(lc.get("Config") or {}, c.config.get("Labels") or {}, c.config.get("Env") or [])
            details = details_prefix(attrs)

        def shape(r: LogRecord) -> tuple[int, bytes]:
            data = details + r.data
            if opts.timestamps:
                data = docker_timestamp(r.timestamp).encode() + b" " + data
            return _STREAM.get(r.stream, 1), data

        async def gen() -> AsyncIterator[tuple[int, bytes]]:
            for r in records:
                yield shape(r)
            if opts.follow and c.running:
                with c.following():
                    async for r in reader.follow(offset, c.exited, streams=streams, until=opts.until):
                        yield shape(r)

        return c.tty, gen()

    # --- attach ----------------------------------------------------------------------------
    def attach(self, ref: str, opts: AttachOptions) -> tuple[bool, Callable[[RawStream], Awaitable[None]]]:
        c = self.svc.get(ref)
        if c.state["Status"] == "removing":
            raise Conflict("cannot attach to a container that is being removed")
        tty = c.tty
        raw = tty or not opts.multiplex
        reader = LogReader(self.svc.log_path(c))
        start_offset = reader.size()
        streams = tuple(s for s, on in (("stdout", opts.stdout), ("stderr", opts.stderr)) if on)
        if not c.running:
            # Attached before it starts (docker run, start -a): follow through the next run.
            c.exited.clear()

        want_stdin = opts.stdin and bool(c.config.get("OpenStdin"))
        attach_sock = os.path.join(self.svc.dir(c), "attach")
        keys = parse_keys(opts.detach_keys)

        async def output(stream: RawStream) -> None:
            if opts.logs:
                records, _ = reader.read(streams=streams, flush=not c.running)
                for r in records:
                    await stream.write(r.data if raw else frame(_STREAM[r.stream], r.data))
            if not opts.stream:
                return
            with c.following():
                # raw and polled often: what a terminal user types is echoed through this
                async for r in reader.follow(start_offset, c.exited, streams=streams, raw=True, interval=0.02):
                    await stream.write(r.data if raw else frame(_STREAM[r.stream], r.data))

        async def run(stream: RawStream) -> None:
            loop = asyncio.get_running_loop()
            self.svc._event(c, "attach")  # as dockerd, once the client is attached
            detached = asyncio.Event()
            if want_stdin:
                loop.create_task(_forward_stdin(c, attach_sock, stream, keys, detached))
            out = loop.create_task(output(stream))
            waiter = loop.create_task(detached.wait())
            try:
                await asyncio.wait({out, waiter}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                out.cancel()
                waiter.cancel()
            if detached.is_set():
                self.svc._event(c, "detach")
            elif not out.cancelled():
                out.result()  # its error, if it ended with one

        return tty, run

    async def changes(self, ref: str) -> list[dict[str, Any]] | None:
        c = self.svc.get(ref)
        found = await asyncio.to_thread(self.svc.layers.changes, c.id, c.top_chain, INIT_FILES)
        return [{"Path": path, "Kind": kind} for path, kind in found] or None  # dockerd: null

    async def top(self, ref: str, ps_args: str) -> dict[str, Any]:
        c = self.svc.get(ref)
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        pids = await self.svc.runtimes[c.runtime].processes(c.id)
        return await asyncio.to_thread(_ps_table, pids, ps_args)


async def _forward_stdin(c: Container, path: str, stream: RawStream, keys: bytes, detached: asyncio.Event) -> None:
    """Client bytes -> conmon's attach socket (SOCK_SEQPACKET) -> the container's stdin.
    The client's half-close becomes our shutdown(SHUT_WR), on which conmon closes stdin; the
    detach keys end the attachment and leave stdin open."""
    loop = asyncio.get_running_loop()
    while not c.running or not os.path.exists(path):
        if c.exited.is_set() and not c.running and c.state["FinishedAt"] != "0001-01-01T00:00:00Z":
            return
        await asyncio.sleep(0.005)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.setblocking(False)
    # Through /proc/self/fd: a data root deep in the tree can make the path exceed sun_path.
    dfd = os.open(os.path.dirname(path), os.O_PATH)
    try:
        await loop.sock_connect(sock, f"/proc/self/fd/{dfd}/{os.path.basename(path)}")
    except OSError:
        sock.close()
        return
    finally:
        os.close(dfd)
    drain = loop.create_task(_discard(loop, sock))
    proxy = EscapeProxy(keys)
    try:
        while data := await stream.read(8192):
            data, detach = proxy.feed(data)
            if data:
                await loop.sock_sendall(sock, data)
            if detach:
                detached.set()
                return
        sock.shutdown(socket.SHUT_WR)
        await asyncio.wait_for(c.exited.wait(), None)
    except (ConnectionError, OSError):
        pass
    finally:
        drain.cancel()
        sock.close()


async def _discard(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    """conmon also sends output on the attach socket; we take output from the log file."""
    try:
        while await loop.sock_recv(sock, 65536):
            pass
    except (ConnectionError, OSError):
        pass


def _name_match(name: str, pattern: str) -> bool:
    pattern = pattern.lstrip("/")
    if any(ch in pattern for ch in "*?[^$"):
        import re

        try:
            return re.search(pattern, name) is not None
        except re.error:
            return fnmatch.fnmatch(name, pattern)
    return pattern in name


def _port_set(values: list[str]) -> set[str]:
    """`80`, `80/udp`, `8000-8010/tcp` as dockerd's port filters read them: `<port>/<proto>` keys."""
    out: set[str] = set()
    for value in values:
        ports, _, proto = value.partition("/")
        lo, _, hi = ports.partition("-")
        try:
            first, last = int(lo), int(hi or lo)
        except ValueError:
            raise InvalidParameter(f"invalid port filter {value!r}: want <port>[/<proto>] or "
                                   "<start>-<end>[/<proto>]") from None
        out.update(f"{n}/{proto or 'tcp'}" for n in range(first, min(last, 65535) + 1))
    return out


def _label_match(c: Container, wanted: list[str]) -> bool:
    labels = c.config.get("Labels") or {}
    for item in wanted:
        if item.startswith("!"):
            continue
        key, sep, val = item.partition("=")
        if key not in labels or (sep and labels[key] != val):
            return False
    return True


def _ps_table(pids: list[int], ps_args: str) -> dict[str, Any]:
    import subprocess

    args = ps_args.split() if ps_args else ["-ef"]
    if "\0" in ps_args:
        raise InvalidParameter("ps: arguments cannot contain a NUL byte")
    out = subprocess.run(["ps", *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise InvalidParameter(f"ps: {out.stderr.strip()}")
    lines = out.stdout.splitlines()
    if not lines:
        return {"Titles": [], "Processes": []}
    titles = lines[0].split()
    try:
        pid_col = titles.index("PID")
    except ValueError:
        raise InvalidParameter("Couldn't find PID field in ps output") from None
    wanted = set(pids)
    procs = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        try:
            if int(fields[pid_col]) in wanted:
                procs.append(fields)
        except (ValueError, IndexError):
            continue
    return {"Titles": titles, "Processes": procs}


