"""Container removal, and recovery at daemon start.

Removal deletes the record first and the files after it; recovery reloads the records, sweeps
the files a crash left between those two steps, re-watches containers still running, settles
those that exited while berthd was away and applies the restart policies at daemon start.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal as signals

from berth.common.errors import BerthError, Conflict
from berth.images.store import ImageStore
from berth.runtime import mount as mounts
from berth.runtime.oci import pid_alive
from berth.snapshots.overlay import LayerStore

from .container_lifecycle import ContainerLifecycle
from .container_records import ContainerRecords
from .model import Container
from .mounts import MountManager
from .networks import NetworkService

log = logging.getLogger("berth.containers")


class ContainerRemoval:
    def __init__(self, records: ContainerRecords, lifecycle: ContainerLifecycle, images: ImageStore,
                 layers: LayerStore, mounts: MountManager, networks: NetworkService | None) -> None:
        self.records = records
        self.lifecycle = lifecycle
        self.images = images
        self.layers = layers
        self.mounts = mounts
        self.networks = networks

    # --- remove ----------------------------------------------------------------------------
    async def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        c = self.records.get(ref)
        if c.running and not force:
            state = "restarting" if c.state["Restarting"] else "running"
            raise Conflict(f"You cannot remove a {state} container {c.id}. Stop the container "
                           "before attempting removal or force remove")
        c.stopped_by_user = True
        if c.running and not self.lifecycle.cancel_restart(c):
            await self.lifecycle.runtimes[c.runtime].kill(c.id, signals.SIGKILL)
            self.records.event(c, "kill", signal=str(int(signals.SIGKILL)))
            await c.exited.wait()
            if not self.records.known(c.id):  # AutoRemove got there first
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
        self.records.delete(c)
        self.records.event(c, "destroy")
        c.removed.set()
        # Files go after the record (`run --rm` need not wait for them); a crash in between leaves
        # orphans that `recover` sweeps.
        await self.lifecycle.cleanup_after_exit(c)
        if self.networks is not None:
            self.networks.release(c)
        self._delete_files(c.id)
        if volumes:
            self.mounts.remove_anonymous(c)
        await asyncio.to_thread(self.images.gc_layers)

    def _delete_files(self, cid: str) -> None:
        self.layers.remove_rw(cid)
        shutil.rmtree(os.path.join(self.records.root, cid), ignore_errors=True)

    # --- recovery --------------------------------------------------------------------------
    async def recover(self) -> None:
        """Load every record; re-watch containers still running; settle those that exited
        while berthd was away (their exit code is in conmon's exit file)."""
        self.records.load()
        self._sweep_orphans()
        for c in self.records.all():
            if c.state["Status"] == "removing":
                c.state["Status"] = "exited"
            if not c.running:
                c.exited.set()
                continue
            self.mounts.reacquire(c)  # so the exit, now or later, releases its volumes
            if c.conmon_pid and pid_alive(c.conmon_pid) and _is_conmon_of(c.conmon_pid, c.id):
                self.lifecycle.watch(c)
                if not c.state["Paused"]:
                    for w in self.lifecycle.watchers:
                        w.started(c, resumed=True)
            else:
                await self.lifecycle.on_exit(c, c.conmon_pid)
        loop = asyncio.get_running_loop()
        for c in self.records.all():
            if not c.running and _restart_at_daemon_start(c):
                loop.create_task(self._start_recovered(c))

    async def _start_recovered(self, c: Container) -> None:
        try:
            await self.lifecycle.start(c.id)
        except BerthError as e:  # NotModified too: something started it first
            log.warning("restart policy: start of %s failed: %s", c.id[:12], e.message)

    def _sweep_orphans(self) -> None:
        """Directories of containers whose record is gone (removed just before a crash)."""
        for cid in os.listdir(self.records.root):
            if self.records.known(cid):
                continue
            try:
                mounts.unmount(os.path.join(self.records.root, cid, "rootfs"))
                mounts.unmount(os.path.join(self.records.root, cid, "shm"))  # --ipc shareable's
            except OSError as e:
                log.warning("unmount of orphan %s failed: %s", cid[:12], e)
                continue
            self._delete_files(cid)
        for cid in self.layers.rw_keys():
            if not self.records.known(cid):
                self.layers.remove_rw(cid)


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
