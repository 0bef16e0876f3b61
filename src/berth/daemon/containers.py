"""Container lifecycle: create, start, stop, kill, restart, remove, wait, and recovery at start.

The service keeps every container in memory and writes its record to SQLite on each change;
the runtime (conmon + runc) owns the processes, so this state is rebuilt from the records and
from what is really running when berthd starts again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal as signals
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from berth.common import reference
from berth.common.db import Database
from berth.common.errors import BerthError, Conflict, InvalidParameter, NotFound, NotModified
from berth.common.ids import generate_name, new_id, valid_name
from berth.images.store import ImageStore
from berth.runtime import mount as mounts
from berth.runtime.oci import ExitWatcher, OCIRuntime, StartError, pid_alive, unusable_reason
from berth.snapshots.overlay import LayerStore
from berth.volumes.driver import VolumeDriver
from berth.volumes.local import LocalDriver

from . import configs
from .events import EventBus
from .logrotation import LogRotation, settings_of
from .model import Container, now_rfc3339
from .mounts import MountManager, RuntimeMounter
from .networks import Attachment, NetworkService
from .remap import Remap
from .remap import check_host_config as check_userns

log = logging.getLogger("berth.containers")

SCHEMA = """
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    record TEXT NOT NULL
);
"""


class ContainerWatcher(Protocol):
    """Runs alongside a running container (health probes, log rotation). `started` follows
    every start and, with `resumed`, a berthd restart or unpause; `stopped` every exit or pause.
    Both may change `c.state`, which is saved right after."""

    def started(self, c: Container, resumed: bool = False) -> None: ...
    def stopped(self, c: Container) -> None: ...


def parse_signal(value: str | int | None, default: int = signals.SIGKILL) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, int):
        return value
    v = value.strip().upper()
    if v.isdigit():
        return int(v)
    if not v.startswith("SIG"):
        v = "SIG" + v
    try:
        return int(signals.Signals[v])
    except KeyError:
        raise InvalidParameter(f"Invalid signal: {value}") from None


class ContainerService:
    def __init__(self, root: str, db: Database, images: ImageStore, layers: LayerStore,
                 runtimes: dict[str, OCIRuntime], default_runtime: str, events: EventBus,
                 volumes: VolumeDriver | None = None, networks: NetworkService | None = None,
                 remap: Remap | None = None) -> None:
        self.root = os.path.join(root, "containers")
        os.makedirs(self.root, exist_ok=True)
        self.db = db
        self.images = images
        self.layers = layers
        self.runtimes = runtimes
        self.default_runtime = default_runtime
        self.events = events
        self.networks = networks
        self.remap = remap  # --userns-remap: containers run in a user namespace with its map
        self._by_id: dict[str, Container] = {}
        self._names: dict[str, str] = {}
        self._watcher: ExitWatcher | None = None
        self._cleanups: dict[str, asyncio.Task[None]] = {}
        self._restarts: dict[str, asyncio.Task[None]] = {}
        if volumes is None:
            volumes = LocalDriver(os.path.join(root, "volumes"), db, RuntimeMounter())
        self.mounts = MountManager(volumes, self.all, self.get)
        self.watchers: list[ContainerWatcher] = [LogRotation(self.log_path)]
        db.ensure_schema(SCHEMA)

    # --- ContainerUsage, for the image store -----------------------------------------------
    def users(self, image_id: str) -> list[tuple[str, bool]]:
        return [(c.id, c.running) for c in self._by_id.values() if c.image_id == image_id]

    def chains_in_use(self) -> set[str]:
        return {c.top_chain for c in self._by_id.values() if c.top_chain}

    # --- records ---------------------------------------------------------------------------
    def dir(self, c: Container) -> str:
        return os.path.join(self.root, c.id)

    def log_path(self, c: Container) -> str:
        return os.path.join(self.dir(c), "ctr.log")

    def rootfs(self, c: Container) -> str:
        return os.path.join(self.dir(c), "rootfs")

    def _save(self, c: Container) -> None:
        with self.db.tx() as tx:
            tx.execute("INSERT OR REPLACE INTO containers(id, name, record) VALUES (?,?,?)",
                       (c.id, c.name, json.dumps(c.to_record())))

    def get(self, ref: str) -> Container:
        """By full ID, name (with or without '/'), or unique ID prefix, as dockerd resolves."""
        if not ref:
            raise NotFound("No such container: ")
        c = self._by_id.get(ref)
        if c:
            return c
        cid = self._names.get(ref.lstrip("/"))
        if cid:
            return self._by_id[cid]
        matches = [c for cid, c in self._by_id.items() if cid.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidParameter(f"multiple IDs found with provided prefix: {ref}")
        raise NotFound(f"No such container: {ref}")

    def all(self) -> list[Container]:
        return list(self._by_id.values())

    def _event(self, c: Container, action: str, **extra: str) -> None:
        attrs = {"image": c.image, "name": c.name}
        attrs.update({k: str(v) for k, v in (c.config.get("Labels") or {}).items()})
        attrs.update(extra)
        self.events.publish("container", action, c.id, attrs)

    # --- create ----------------------------------------------------------------------------
    async def create(self, body: Any, name: str | None) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise InvalidParameter("config cannot be empty in order to create a container")
        image_name = body.get("Image")
        if not image_name or not isinstance(image_name, str):
            raise InvalidParameter("Config.Image is required: no image specified")
        if name:
            if not valid_name(name):
                raise InvalidParameter(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] "
                                       "are allowed")
            name = name.lstrip("/")
            if name in self._names:
                raise Conflict(f'Conflict. The container name "/{name}" is already in use by container '
                               f'"{self._names[name]}". You have to remove (or rename) that container '
                               "to be able to reuse that name.")
        try:
            img = self.images.get(image_name)
        except NotFound:
            shown = image_name
            try:
                shown = str(reference.parse(image_name).with_default_tag())
            except reference.InvalidReference:
                pass
            raise NotFound(f"No such image: {shown}") from None
        host_config = configs.normalize_host_config(body.get("HostConfig") or {})
        check_userns(host_config, self.remap is not None)
        runtime = host_config.get("Runtime") or self.default_runtime
        if runtime not in self.runtimes:
            raise InvalidParameter(f"unknown or invalid runtime name: {runtime}")
        reason = unusable_reason(runtime)
        if reason:
            raise InvalidParameter(f"runtime {runtime} cannot run containers on this host: {reason}")
        host_config["Runtime"] = runtime
        cid = new_id()
        if not name:
            name = generate_name()
            while name in self._names:
                name = generate_name()
        config = configs.merge_config(img.config.get("config") or {}, body, cid)
        path, args = configs.command(img.config.get("config") or {}, body)
        c = Container(id=cid, name=name, created=now_rfc3339(), image=image_name, image_id=img.id,
                      top_chain=img.top_chain, path=path, args=args, config=config,
                      host_config=host_config, runtime=runtime)
        c.networks = configs.networks_for(host_config)
        if self.networks is not None:
            mode = host_config["NetworkMode"]
            if mode.startswith("container:"):
                self.get(mode[len("container:"):])
            netcfg = body.get("NetworkingConfig") or {}
            c.networks = self.networks.plan(mode, netcfg.get("EndpointsConfig") if isinstance(netcfg, dict)
                                            else None, mac=str(body.get("MacAddress") or "") or None)
            host_config["Links"] = self.networks.register_links(c)
        c.mounts = self.mounts.plan(cid, config, host_config)
        os.makedirs(self.rootfs(c), exist_ok=True)
        self.layers.prepare(cid, img.top_chain)
        self._by_id[cid] = c
        self._names[name] = cid
        try:
            self._save(c)
        except BaseException:
            self._forget(c)
            raise
        self._event(c, "create")
        return {"Id": cid, "Warnings": []}

    def _forget(self, c: Container) -> None:
        self._by_id.pop(c.id, None)
        if self._names.get(c.name) == c.id:
            del self._names[c.name]

    # --- start -----------------------------------------------------------------------------
    async def start(self, ref: str) -> None:
        c = self.get(ref)
        async with c.busy:
            if c.running:
                raise NotModified("container already started")
            if c.state["Status"] == "removing":
                raise Conflict(f"container {c.id} is marked for removal and cannot be started")
            c.stopped_by_user = False
            try:
                await self._start(c)
                return
            except BerthError as e:
                error = e
        # dockerd removes an AutoRemove container whose start failed; `run --rm` waits for it.
        if c.host_config.get("AutoRemove"):
            await self.remove(c.id, force=True)
        raise error

    async def _start(self, c: Container) -> None:
        runtime = self.runtimes[c.runtime]
        rootfs = self.rootfs(c)
        cdir = self.dir(c)
        try:
            settings_of(c)  # bad --log-opt values fail the start, as in dockerd
            await self.settled(c)  # the last exit's cleanup must not unmount what this start mounts
            remap = self.remap if self.remap is not None and self.remap.applies(c.host_config) else None
            if not mounts.is_mounted(rootfs):
                m = self.layers.mount_spec(c.id, c.top_chain)
                if remap is not None:
                    remap.mount_rootfs(m, rootfs)
                else:
                    mounts.mount(m.source, rootfs, m.type, m.options)
            if remap is not None:
                remap.prepare_rootfs(rootfs, c.config.get("WorkingDir") or "/", c.config.get("User") or "")
            att, finish_networks = await self._attach_networks(c)
            spec = configs.build_bundle(c, cdir, rootfs, self.mounts.oci_mounts(c, rootfs), att.netns_path, att.ips,
                                        embedded_dns=att.embedded_dns, link_hosts=att.link_hosts,
                                        link_env=att.link_env)
            late_netns = remap is not None and remap.finish_spec(spec, cdir, att.netns_path,
                                                                 c.host_config.get("Devices"))
            tmp = os.path.join(cdir, "config.json.tmp")
            with open(tmp, "w") as f:
                json.dump(spec, f)
            os.rename(tmp, os.path.join(cdir, "config.json"))
            if runtime.has_state(c.id):  # a leftover from a crash would make create fail
                await self._runtime_cleanup(c)
            # veths, ports and the resolver are wired while the runtime creates the container
            # (~40 ms of runc); its process only runs at start, after both are done.
            wiring = asyncio.ensure_future(finish_networks()) if finish_networks and not late_netns else None
            try:
                created = await runtime.create(c.id, cdir, self.log_path(c), tty=c.tty,
                                               stdin=bool(c.config.get("OpenStdin")),
                                               stdin_once=bool(c.config.get("StdinOnce")))
            except BaseException:
                if wiring is not None:
                    (wired,) = await asyncio.gather(wiring, return_exceptions=True)
                    if isinstance(wired, BerthError):
                        # the cause (e.g. a port in use): its undo removed the netns runc wanted
                        raise wired from None
                raise
            if late_netns:  # userns-remap: wired once the runtime has made the namespace
                try:
                    Remap.adopt_netns(created.pid, str(att.netns_path))
                except BaseException:
                    await runtime.delete(c.id)
                    raise
                wiring = asyncio.ensure_future(finish_networks()) if finish_networks else None
            if wiring is not None:
                try:
                    await wiring
                except BaseException:
                    await runtime.delete(c.id)  # the created container never runs
                    raise
            c.conmon_pid = created.conmon_pid
            c.exited.clear()
            self._watch(c)
            await runtime.start(c.id)
        except StartError as e:
            c.conmon_pid = 0
            await self._cleanup_after_exit(c)
            c.state.update(Status="created" if c.state["StartedAt"].startswith("0001") else "exited",
                           Error=e.message, ExitCode=e.exit_code, Running=False, Pid=0)
            self._save(c)
            self._event(c, "die", exitCode=str(e.exit_code))
            c.exited.set()
            raise
        except BerthError as e:  # bad parameters, a network or port that cannot be had
            await self._cleanup_after_exit(c)
            c.state.update(Error=e.message)
            self._save(c)
            c.exited.set()  # attached clients (docker run) stop waiting for output
            raise
        c.state.update(Status="running", Running=True, Paused=False, Restarting=False, OOMKilled=False,
                       Dead=False, Pid=created.pid, ExitCode=0, Error="", StartedAt=now_rfc3339())
        for w in self.watchers:
            w.started(c)
        self._save(c)
        self._event(c, "start")

    async def _attach_networks(self, c: Container) -> tuple[Attachment, Callable[[], Awaitable[None]] | None]:
        """The netns to join and the container's addresses (its networks' endpoints, or the
        namespace of the container named by `container:<id>`), and what is left to wire."""
        mode = c.host_config.get("NetworkMode") or "default"
        if mode.startswith("container:"):
            other = self.get(mode[len("container:"):])
            if not other.running or not other.state.get("Pid"):
                raise Conflict(f"cannot join network of a non running container: {other.id}")
            # As dockerd: a container in another's network namespace takes its host name too.
            c.config["Hostname"] = other.config.get("Hostname") or other.id[:12]
            c.config["Domainname"] = other.config.get("Domainname") or ""
            return Attachment(f"/proc/{other.state['Pid']}/ns/net", [],  # its resolver is ours too
                              embedded_dns=self.networks is not None and self.networks.has_dns(other.id)), None
        if self.networks is None:
            return Attachment(None, []), None
        return await self.networks.prepare(c)

    def _watch(self, c: Container) -> None:
        if self._watcher is None:
            self._watcher = ExitWatcher(asyncio.get_running_loop())
        pid = c.conmon_pid

        def on_exit() -> None:
            asyncio.get_running_loop().create_task(self._on_exit(c, pid))

        if not self._watcher.watch(pid, on_exit):
            asyncio.get_running_loop().create_task(self._on_exit(c, pid))

    async def _on_exit(self, c: Container, conmon_pid: int) -> None:
        # Under the lock: a fast exit must not be recorded before its own start is.
        async with c.busy:
            if c.conmon_pid != conmon_pid or c.id not in self._by_id:
                return
            code = self.runtimes[c.runtime].read_exit_code(c.id)
            if code is None:
                code = 255
            oom = os.path.exists(os.path.join(self.dir(c), "oom"))
            await self._cleanup_after_exit(c, background=True)
            c.conmon_pid = 0
            delay = self._restart_delay(c, code)
            # Restarting counts as running (rm, stop and kill treat it so), as in dockerd.
            c.state.update(Status="exited" if delay is None else "restarting", Running=delay is not None,
                           Paused=False, Restarting=delay is not None, Pid=0, ExitCode=code, OOMKilled=oom,
                           FinishedAt=now_rfc3339())
            for w in self.watchers:
                w.stopped(c)
            self._save(c)
        if oom:
            self._event(c, "oom")
        self._event(c, "die", exitCode=str(code))
        c.exited.set()
        if delay is not None:
            self._restarts[c.id] = asyncio.get_running_loop().create_task(self._restart_later(c, delay))
            return
        if c.host_config.get("AutoRemove"):
            try:
                await self.remove(c.id, force=True, volumes=True)
            except NotFound:
                pass

    def _restart_delay(self, c: Container, code: int) -> float | None:
        """Seconds until the restart policy starts `c` again, or None to leave it exited.
        dockerd's backoff: 100 ms, doubled per restart up to a minute, reset after a 10 s run."""
        policy = c.host_config.get("RestartPolicy") or {}
        name = policy.get("Name") or "no"
        if name == "no" or c.stopped_by_user or c.state["Status"] == "removing":
            return None
        if name == "on-failure":
            limit = int(policy.get("MaximumRetryCount") or 0)
            if code == 0 or (limit and c.restart_count >= limit):
                return None
        ran = time.time() - self.started_at(c)
        c.restart_delay = 0.1 if ran >= 10 or not c.restart_delay else min(c.restart_delay * 2, 60.0)
        return c.restart_delay

    async def _restart_later(self, c: Container, delay: float) -> None:
        await asyncio.sleep(delay)
        async with c.busy:
            if self._restarts.get(c.id) is not asyncio.current_task():
                return
            del self._restarts[c.id]
            c.restart_count += 1
            try:
                await self._start(c)
            except BerthError as e:
                log.warning("restart of %s failed: %s", c.id[:12], e.message)
                c.state.update(Status="exited", Running=False, Restarting=False)
                self._save(c)
                c.exited.set()

    def _cancel_restart(self, c: Container) -> bool:
        """Leave a container that waits for its policy's restart exited; False if none waits."""
        task = self._restarts.pop(c.id, None)
        if task is None:
            return False
        task.cancel()
        c.state.update(Status="exited", Running=False, Restarting=False)
        self._save(c)
        return True

    async def _cleanup_after_exit(self, c: Container, background: bool = False) -> None:
        """Release what a stopped container held (runtime state and cgroups, rootfs mount,
        volumes, network endpoints). In the background after an exit, so `run --rm` and waiters
        hear of it at once; a start, a stop and a removal join it before going on."""
        pending = self._cleanups.get(c.id)
        if pending is None or pending.done():
            pending = asyncio.get_running_loop().create_task(self._release(c))
            self._cleanups[c.id] = pending
            pending.add_done_callback(self._forget_cleanup(c.id))
        if not background:
            await asyncio.shield(pending)

    async def settled(self, c: Container) -> None:
        """Wait for the cleanup of the container's last exit, if one is going on."""
        pending = self._cleanups.get(c.id)
        if pending is not None:
            await asyncio.shield(pending)

    async def _release(self, c: Container) -> None:
        await self._runtime_cleanup(c)
        try:
            mounts.unmount(self.rootfs(c))
        except OSError as e:
            log.warning("unmount of %s failed: %s", c.id[:12], e)
        self.mounts.release(c)
        if self.networks is not None:
            try:
                await self.networks.detach(c)
            except Exception as e:  # noqa: BLE001 - cleanup must go on; the error is logged
                log.warning("network cleanup of %s failed: %s", c.id[:12], e)
        try:  # a stale attach socket would be mistaken for the next run's
            os.unlink(os.path.join(self.dir(c), "attach"))
        except FileNotFoundError:
            pass

    def _forget_cleanup(self, cid: str) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            if self._cleanups.get(cid) is task:
                del self._cleanups[cid]
        return done

    async def _runtime_cleanup(self, c: Container) -> None:
        runtime = self.runtimes[c.runtime]
        if not runtime.has_state(c.id):
            return
        try:
            await runtime.delete(c.id)
        except Exception as e:  # noqa: BLE001 - cleanup must go on; the error is logged
            log.warning("runtime delete of %s failed: %s", c.id[:12], e)

    # --- stop / kill / restart --------------------------------------------------------------
    async def kill(self, ref: str, signal: str | None = None) -> None:
        c = self.get(ref)
        sig = parse_signal(signal, signals.SIGKILL)
        if not c.running:
            raise Conflict(f"Cannot kill container: {ref}: Container {c.id} is not running")
        # As dockerd: SIGKILL or the stop signal (any signal, if none is set) ends restarts.
        stop_signal = c.config.get("StopSignal")
        if not stop_signal or sig in (signals.SIGKILL, parse_signal(stop_signal)):
            c.stopped_by_user = True
        if self._cancel_restart(c):
            return
        await self.runtimes[c.runtime].kill(c.id, sig)
        self._event(c, "kill", signal=str(sig))
        if sig == signals.SIGKILL:
            # dockerd's kill without a signal returns once the container is down
            try:
                await asyncio.wait_for(c.exited.wait(), 10)
            except TimeoutError:
                log.warning("container %s still running 10 s after SIGKILL", c.id[:12])

    async def stop(self, ref: str, timeout: int | None = None, signal: str | None = None) -> None:
        c = self.get(ref)
        if not c.running:
            raise NotModified("container already stopped")
        c.stopped_by_user = True
        if not self._cancel_restart(c):
            await self._stop(c, timeout, signal)
        self._event(c, "stop")

    async def _stop(self, c: Container, timeout: int | None, signal: str | None = None) -> None:
        sig = parse_signal(signal or c.config.get("StopSignal"), signals.SIGTERM)
        if timeout is None:
            timeout = c.config.get("StopTimeout")
            if timeout is None:
                timeout = 10
        runtime = self.runtimes[c.runtime]
        if timeout != 0:
            try:
                await runtime.kill(c.id, sig)
                self._event(c, "kill", signal=str(sig))
            except Conflict:
                pass
            try:
                await asyncio.wait_for(c.exited.wait(), None if timeout < 0 else timeout)
                await self.settled(c)  # `docker stop` returns with the endpoints and mounts gone
                return
            except TimeoutError:
                pass
        try:
            await runtime.kill(c.id, signals.SIGKILL, all_processes=False)
            self._event(c, "kill", signal=str(int(signals.SIGKILL)))
        except Conflict:
            pass
        await c.exited.wait()
        await self.settled(c)

    async def restart(self, ref: str, timeout: int | None = None, signal: str | None = None) -> None:
        c = self.get(ref)
        c.stopped_by_user = True
        if c.running and not self._cancel_restart(c):
            await self._stop(c, timeout, signal)
        async with c.busy:
            c.stopped_by_user = False
            await self._start(c)
        self._event(c, "restart")

    # --- remove ----------------------------------------------------------------------------
    async def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        c = self.get(ref)
        if c.running and not force:
            state = "restarting" if c.state["Restarting"] else "running"
            raise Conflict(f"You cannot remove a {state} container {c.id}. Stop the container "
                           "before attempting removal or force remove")
        c.stopped_by_user = True
        if c.running and not self._cancel_restart(c):
            await self.runtimes[c.runtime].kill(c.id, signals.SIGKILL)
            self._event(c, "kill", signal=str(int(signals.SIGKILL)))
            await c.exited.wait()
            if c.id not in self._by_id:  # AutoRemove got there first
                return
        if c.state["Status"] == "removing":
            raise Conflict(f"removal of container {c.id[:12]} is already in progress")
        c.state["Status"] = "removing"
        if c.followers:
            # let attached clients read the last of the log before it is deleted
            try:
                await asyncio.wait_for(c.followers_gone.wait(), 5)
            except TimeoutError:
                log.warning("removing %s while %d log readers are still attached", c.id[:12], c.followers)
        with self.db.tx() as tx:
            tx.execute("DELETE FROM containers WHERE id=?", (c.id,))
        self._forget(c)
        self._event(c, "destroy")
        c.removed.set()
        # Files go after the record (`run --rm` need not wait for them); a crash in between leaves
        # orphans that `recover` sweeps.
        await self._cleanup_after_exit(c)
        if self.networks is not None:
            self.networks.release(c)
        self._delete_files(c.id)
        if volumes:
            self.mounts.remove_anonymous(c)
        await asyncio.to_thread(self.images.gc_layers)

    def _delete_files(self, cid: str) -> None:
        self.layers.remove_rw(cid)
        shutil.rmtree(os.path.join(self.root, cid), ignore_errors=True)

    # --- wait ------------------------------------------------------------------------------
    def wait(self, c: Container, condition: str) -> Awaitable[int]:
        """Register a waiter now (so a start that follows is seen) and return what to await."""
        if condition not in ("", "not-running", "next-exit", "removed"):
            raise InvalidParameter(f"invalid condition: {condition}")
        if condition == "next-exit" and not c.running:
            c.exited.clear()
        done_now = condition in ("", "not-running") and not c.running

        async def waiter() -> int:
            if condition == "removed":
                await c.removed.wait()
            elif not done_now:
                await c.exited.wait()
            return int(c.state["ExitCode"])

        return waiter()

    # --- rename ----------------------------------------------------------------------------
    def rename(self, ref: str, new_name: str) -> None:
        c = self.get(ref)
        if not new_name or not valid_name(new_name):
            raise InvalidParameter(f"Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] "
                                   "are allowed")
        new_name = new_name.lstrip("/")
        if new_name == c.name:
            raise InvalidParameter("Renaming a container with the same name as its current name")
        if new_name in self._names:
            raise Conflict(f'Conflict. The container name "/{new_name}" is already in use by container '
                           f'"{self._names[new_name]}". You have to remove (or rename) that container '
                           "to be able to reuse that name.")
        old = c.name
        del self._names[old]
        c.name = new_name
        self._names[new_name] = c.id
        self._save(c)
        self._event(c, "rename", oldName="/" + old)

    # --- recovery --------------------------------------------------------------------------
    async def recover(self) -> None:
        """Load every record; re-watch containers still running; settle those that exited
        while berthd was away (their exit code is in conmon's exit file)."""
        for row in self.db.query("SELECT record FROM containers"):
            c = Container.from_record(json.loads(row["record"]))
            self._by_id[c.id] = c
            self._names[c.name] = c.id
        self._sweep_orphans()
        for c in list(self._by_id.values()):
            if c.state["Status"] == "removing":
                c.state["Status"] = "exited"
            if not c.running:
                c.exited.set()
                continue
            self.mounts.reacquire(c)  # so the exit, now or later, releases its volumes
            if c.conmon_pid and pid_alive(c.conmon_pid) and _is_conmon_of(c.conmon_pid, c.id):
                self._watch(c)
                if not c.state["Paused"]:
                    for w in self.watchers:
                        w.started(c, resumed=True)
            else:
                await self._on_exit(c, c.conmon_pid)
        loop = asyncio.get_running_loop()
        for c in list(self._by_id.values()):
            if not c.running and _restart_at_daemon_start(c):
                loop.create_task(self._start_recovered(c))

    async def _start_recovered(self, c: Container) -> None:
        try:
            await self.start(c.id)
        except BerthError as e:  # NotModified too: something started it first
            log.warning("restart policy: start of %s failed: %s", c.id[:12], e.message)

    def _sweep_orphans(self) -> None:
        """Directories of containers whose record is gone (removed just before a crash)."""
        for cid in os.listdir(self.root):
            if cid in self._by_id:
                continue
            try:
                mounts.unmount(os.path.join(self.root, cid, "rootfs"))
            except OSError as e:
                log.warning("unmount of orphan %s failed: %s", cid[:12], e)
                continue
            self._delete_files(cid)
        for cid in self.layers.rw_keys():
            if cid not in self._by_id:
                self.layers.remove_rw(cid)

    def graph_driver(self, c: Container) -> dict[str, Any]:
        m = self.layers.mount_spec(c.id, c.top_chain)
        opts = dict(o.split("=", 1) for o in m.options)
        return {"Name": "overlay2", "Data": {"LowerDir": opts.get("lowerdir", ""),
                                             "MergedDir": self.rootfs(c), "UpperDir": opts.get("upperdir", ""),
                                             "WorkDir": opts.get("workdir", "")}}

    def inspect(self, ref: str, size: bool = False) -> dict[str, Any]:
        c = self.get(ref)
        d = self.dir(c)
        sizes = None
        if size:
            rw = self.layers.rw_usage(c.id)
            img = self.images._load(c.image_id)
            sizes = {"SizeRw": rw, "SizeRootFs": rw + (img.size if img else 0)}
        out = c.inspect(self.graph_driver(c), self.log_path(c), os.path.join(d, "resolv.conf"),
                        os.path.join(d, "hostname"), os.path.join(d, "hosts"), sizes)
        return out

    def started_at(self, c: Container) -> float:
        from .model import rfc3339_to_unix

        return rfc3339_to_unix(c.state["StartedAt"])


def _restart_at_daemon_start(c: Container) -> bool:
    """dockerd's rule for a stopped container when the daemon starts: `always` comes back even
    if the user stopped it, `unless-stopped` only if they did not, `on-failure` after a non-zero
    exit within its retry count (and, in berth, not after a stop by the user); never one that
    was never started."""
    if c.state["StartedAt"].startswith("0001") or c.host_config.get("AutoRemove"):
        return False
    policy = c.host_config.get("RestartPolicy") or {}
    name = policy.get("Name") or "no"
    if name == "always":
        return True
    if name == "unless-stopped":
        return not c.stopped_by_user
    if name == "on-failure":
        limit = int(policy.get("MaximumRetryCount") or 0)
        return (int(c.state["ExitCode"]) != 0 and not c.stopped_by_user
                and (not limit or c.restart_count < limit))
    return False


def _is_conmon_of(pid: int, cid: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return bool(argv) and argv[0].endswith(b"conmon") and cid.encode() in argv
