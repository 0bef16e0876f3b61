"""Container lifecycle: start, stop, kill and restart, exit handling, and the restart policy.

Starting mounts the rootfs, attaches the networks, writes the OCI bundle and has the runtime
(conmon + runc) create and start the process; an exit is noticed through conmon's pid, and
what the container held is released in the background. The restart policy's back-off is
dockerd's. Removal and recovery at daemon start (container_removal.py) sit above this module;
records (container_records.py) below it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal as signals
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from berth.common.errors import BerthError, Conflict, InvalidParameter, NotFound, NotModified
from berth.runtime import mount as mounts
from berth.runtime.oci import ExitWatcher, OCIRuntime, StartError
from berth.snapshots.overlay import LayerStore

from . import configs
from .container_records import ContainerRecords
from .logrotation import settings_of
from .model import Container, now_rfc3339, rfc3339_to_unix
from .mounts import MountManager
from .network_attach import Attachment
from .networks import NetworkService
from .remap import Remap

log = logging.getLogger("berth.containers")


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


class ContainerLifecycle:
    def __init__(self, records: ContainerRecords, runtimes: dict[str, OCIRuntime], layers: LayerStore,
                 mounts: MountManager, networks: NetworkService | None, remap: Remap | None,
                 watchers: list[ContainerWatcher], remove: Callable[..., Awaitable[None]]) -> None:
        self.records = records
        self.runtimes = runtimes
        self.layers = layers
        self.mounts = mounts
        self.networks = networks
        self.remap = remap
        self.watchers = watchers
        self._remove = remove  # the service's removal, for AutoRemove containers that exit
        self._watcher: ExitWatcher | None = None
        self._cleanups: dict[str, asyncio.Task[None]] = {}
        self._restarts: dict[str, asyncio.Task[None]] = {}

    # --- start -----------------------------------------------------------------------------
    async def start(self, ref: str) -> None:
        c = self.records.get(ref)
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
            await self._remove(c.id, force=True)
        raise error

    async def _start(self, c: Container) -> None:
        runtime = self.runtimes[c.runtime]
        rootfs = self.records.rootfs(c)
        cdir = self.records.dir(c)
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
            namespaces, shm = self._shared_namespaces(c)
            att, finish_networks = await self._attach_networks(c)
            spec = configs.build_bundle(c, cdir, rootfs, self.mounts.oci_mounts(c, rootfs) + shm, att.netns_path,
                                        att.ips, embedded_dns=att.embedded_dns, link_hosts=att.link_hosts,
                                        link_env=att.link_env, namespaces=namespaces)
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
                created = await runtime.create(c.id, cdir, self.records.log_path(c), tty=c.tty,
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
            self.watch(c)
            await runtime.start(c.id)
        except StartError as e:
            c.conmon_pid = 0
            await self.cleanup_after_exit(c)
            c.state.update(Status="created" if c.state["StartedAt"].startswith("0001") else "exited",
                           Error=e.message, ExitCode=e.exit_code, Running=False, Pid=0)
            self.records.save(c)
            self.records.event(c, "die", exitCode=str(e.exit_code))
            c.exited.set()
            raise
        except BerthError as e:  # bad parameters, a network or port that cannot be had
            await self.cleanup_after_exit(c)
            c.state.update(Error=e.message)
            self.records.save(c)
            c.exited.set()  # attached clients (docker run) stop waiting for output
            raise
        c.state.update(Status="running", Running=True, Paused=False, Restarting=False, OOMKilled=False,
                       Dead=False, Pid=created.pid, ExitCode=0, Error="", StartedAt=now_rfc3339())
        for w in self.watchers:
            w.started(c)
        self.records.save(c)
        self.records.event(c, "start")

    def _shared_namespaces(self, c: Container) -> tuple[dict[str, str], list[dict[str, Any]]]:
        """--pid, --ipc and --uts: the host's namespace, none (IPC), or another running container's
        (`container:<id>`, joined by path); and, joining another's IPC, its /dev/shm as well."""
        hc = c.host_config
        out = {"uts_mode": "host" if hc.get("UTSMode") == "host" else ""}
        shm: list[dict[str, Any]] = []
        pid_mode = hc.get("PidMode") or ""
        if pid_mode.startswith("container:"):
            donor = self._running_donor(pid_mode, "PID")
            out["pid_mode"] = f"/proc/{donor.state['Pid']}/ns/pid"
        elif pid_mode == "host":
            out["pid_mode"] = "host"
        ipc_mode = hc.get("IpcMode") or "private"
        if ipc_mode.startswith("container:"):
            donor = self._running_donor(ipc_mode, "IPC")
            donor_mode = donor.host_config.get("IpcMode") or "private"
            if donor_mode not in ("shareable", "host"):
                raise Conflict(f"cannot join IPC of container {donor.id}: non-shareable IPC (hint: use "
                               "IpcMode:shareable for the donor container)")
            out["ipc_mode"] = f"/proc/{donor.state['Pid']}/ns/ipc"
            source = self._shm_dir(donor) if donor_mode == "shareable" else "/dev/shm"
            shm.append({"destination": "/dev/shm", "type": "bind", "source": source, "options": ["rbind", "rprivate"]})
        elif ipc_mode in ("host", "none"):
            out["ipc_mode"] = ipc_mode
        elif ipc_mode == "shareable":
            # as dockerd: the tmpfs lives on the host side, where those who join can bind it too
            path = self._shm_dir(c)
            os.makedirs(path, exist_ok=True)
            if not mounts.is_mounted(path):
                size = hc.get("ShmSize") or 64 << 20
                mounts.mount("shm", path, "tmpfs", ["mode=1777", f"size={size}"],
                             mounts.MS_NOSUID | mounts.MS_NODEV | mounts.MS_NOEXEC)
            shm.append({"destination": "/dev/shm", "type": "bind", "source": path, "options": ["rbind", "rprivate"]})
        return out, shm

    def _shm_dir(self, c: Container) -> str:
        return os.path.join(self.records.dir(c), "shm")

    def _running_donor(self, mode: str, what: str) -> Container:
        donor = self.records.get(mode.split(":", 1)[1])
        if not donor.running or not donor.state.get("Pid"):
            raise Conflict(f"cannot join {what} of a non running container: {donor.id}")
        return donor

    async def _attach_networks(self, c: Container) -> tuple[Attachment, Callable[[], Awaitable[None]] | None]:
        """The netns to join and the container's addresses (its networks' endpoints, or the
        namespace of the container named by `container:<id>`), and what is left to wire."""
        mode = c.host_config.get("NetworkMode") or "default"
        if mode.startswith("container:"):
            other = self.records.get(mode[len("container:"):])
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

    def watch(self, c: Container) -> None:
        if self._watcher is None:
            self._watcher = ExitWatcher(asyncio.get_running_loop())
        pid = c.conmon_pid

        def on_exit() -> None:
            asyncio.get_running_loop().create_task(self.on_exit(c, pid))

        if not self._watcher.watch(pid, on_exit):
            asyncio.get_running_loop().create_task(self.on_exit(c, pid))

    async def on_exit(self, c: Container, conmon_pid: int) -> None:
        # Under the lock: a fast exit must not be recorded before its own start is.
        async with c.busy:
            if c.conmon_pid != conmon_pid or not self.records.known(c.id):
                return
            code = self.runtimes[c.runtime].read_exit_code(c.id)
            if code is None:
                code = 255
            oom = os.path.exists(os.path.join(self.records.dir(c), "oom"))
            await self.cleanup_after_exit(c, background=True)
            c.conmon_pid = 0
            delay = self._restart_delay(c, code)
            # Restarting counts as running (rm, stop and kill treat it so), as in dockerd.
            c.state.update(Status="exited" if delay is None else "restarting", Running=delay is not None,
                           Paused=False, Restarting=delay is not None, Pid=0, ExitCode=code, OOMKilled=oom,
                           FinishedAt=now_rfc3339())
            for w in self.watchers:
                w.stopped(c)
            self.records.save(c)
        if oom:
            self.records.event(c, "oom")
        self.records.event(c, "die", exitCode=str(code))
        c.exited.set()
        if delay is not None:
            self._restarts[c.id] = asyncio.get_running_loop().create_task(self._restart_later(c, delay))
            return
        if c.host_config.get("AutoRemove"):
            try:
                await self._remove(c.id, force=True, volumes=True)
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
        ran = time.time() - _started_at(c)
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
                self.records.save(c)
                c.exited.set()

    def cancel_restart(self, c: Container) -> bool:
        """Leave a container that waits for its policy's restart exited; False if none waits."""
        task = self._restarts.pop(c.id, None)
        if task is None:
            return False
        task.cancel()
        c.state.update(Status="exited", Running=False, Restarting=False)
        self.records.save(c)
        return True

    async def cleanup_after_exit(self, c: Container, background: bool = False) -> None:
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
        for path in (self.records.rootfs(c), self._shm_dir(c)):
            try:
                mounts.unmount(path)
            except OSError as e:
                log.warning("unmount of %s failed: %s", path, e)
        self.mounts.release(c)
        if self.networks is not None:
            try:
                await self.networks.detach(c)
            except Exception as e:  # noqa: BLE001 - cleanup must go on; the error is logged
                log.warning("network cleanup of %s failed: %s", c.id[:12], e)
        try:  # a stale attach socket would be mistaken for the next run's
            os.unlink(os.path.join(self.records.dir(c), "attach"))
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
        c = self.records.get(ref)
        sig = parse_signal(signal, signals.SIGKILL)
        if not c.running:
            raise Conflict(f"Cannot kill container: {ref}: Container {c.id} is not running")
        # As dockerd: SIGKILL or the stop signal (any signal, if none is set) ends restarts.
        stop_signal = c.config.get("StopSignal")
        if not stop_signal or sig in (signals.SIGKILL, parse_signal(stop_signal)):
            c.stopped_by_user = True
        if self.cancel_restart(c):
            return
        await self.runtimes[c.runtime].kill(c.id, sig)
        self.records.event(c, "kill", signal=str(sig))
        if sig == signals.SIGKILL:
            # dockerd's kill without a signal returns once the container is down
            try:
                await asyncio.wait_for(c.exited.wait(), 10)
            except TimeoutError:
                log.warning("container %s still running 10 s after SIGKILL", c.id[:12])

    async def stop(self, ref: str, timeout: int | None = None, signal: str | None = None) -> None:
        c = self.records.get(ref)
        if not c.running:
            raise NotModified("container already stopped")
        c.stopped_by_user = True
        if not self.cancel_restart(c):
            await self._stop(c, timeout, signal)
        self.records.event(c, "stop")

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
                self.records.event(c, "kill", signal=str(sig))
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
            self.records.event(c, "kill", signal=str(int(signals.SIGKILL)))
        except Conflict:
            pass
        await c.exited.wait()
        await self.settled(c)

    async def restart(self, ref: str, timeout: int | None = None, signal: str | None = None) -> None:
        c = self.records.get(ref)
        c.stopped_by_user = True
        if c.running and not self.cancel_restart(c):
            await self._stop(c, timeout, signal)
        async with c.busy:
            c.stopped_by_user = False
            await self._start(c)
        self.records.event(c, "restart")


def _started_at(c: Container) -> float:
    return rfc3339_to_unix(c.state["StartedAt"])
