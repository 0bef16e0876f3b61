"""The container service: what the API and the rest of the daemon call for containers.

It creates containers (config merge, name, networks and mounts planned, rootfs prepared),
renames, waits for and inspects them, and hands the rest to its parts, each in its own module:
records in memory and SQLite (container_records.py), the lifecycle of the process with exits
and restart policies (container_lifecycle.py), and removal with recovery at daemon start
(container_removal.py). The runtime (conmon + runc) owns the processes, so the state is
rebuilt from the records and from what is really running when berthd starts again.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable
from typing import Any

from berth.common import reference
from berth.common.db import Database
from berth.common.errors import Conflict, InvalidParameter, NotFound
from berth.common.ids import generate_name, new_id, valid_name
from berth.images.store import ImageStore
from berth.runtime.etcfiles import DOCKERENV
from berth.runtime.oci import OCIRuntime, unusable_reason
from berth.snapshots.overlay import LayerStore
from berth.volumes.driver import VolumeDriver
from berth.volumes.local import LocalDriver

from . import configs
from .container_lifecycle import ContainerLifecycle, ContainerWatcher
from .container_records import ContainerRecords
from .container_removal import ContainerRemoval
from .events import EventBus
from .logrotation import LogRotation
from .model import Container, now_rfc3339
from .mounts import MountManager, RuntimeMounter
from .networks import NetworkService
from .remap import Remap
from .remap import check_host_config as check_userns


class ContainerService:
    def __init__(self, root: str, db: Database, images: ImageStore, layers: LayerStore,
                 runtimes: dict[str, OCIRuntime], default_runtime: str, events: EventBus,
                 volumes: VolumeDriver | None = None, networks: NetworkService | None = None,
                 remap: Remap | None = None) -> None:
        self.records = ContainerRecords(root, db, events)
        self.root = self.records.root
        self.db = db
        self.images = images
        self.layers = layers
        self.runtimes = runtimes
        self.default_runtime = default_runtime
        self.events = events
        self.networks = networks
        self.remap = remap  # --userns-remap: containers run in a user namespace with its map
        if volumes is None:
            volumes = LocalDriver(os.path.join(root, "volumes"), db, RuntimeMounter())
        self.mounts = MountManager(volumes, self.all, self.get)
        self.watchers: list[ContainerWatcher] = [LogRotation(self.log_path)]
        self.lifecycle = ContainerLifecycle(self.records, runtimes, layers, self.mounts, networks, remap,
                                            self.watchers, self.remove)
        self.removal = ContainerRemoval(self.records, self.lifecycle, images, layers, self.mounts, networks)

    # --- ContainerUsage, for the image store -----------------------------------------------
    def users(self, image_id: str) -> list[tuple[str, bool]]:
        return [(c.id, c.running) for c in self.records.all() if c.image_id == image_id]

    def chains_in_use(self) -> set[str]:
        return {c.top_chain for c in self.records.all() if c.top_chain}

    # --- records (container_records.py) -----------------------------------------------------
    def dir(self, c: Container) -> str:
        return self.records.dir(c)

    def log_path(self, c: Container) -> str:
        return self.records.log_path(c)

    def rootfs(self, c: Container) -> str:
        return self.records.rootfs(c)

    def get(self, ref: str) -> Container:
        """By full ID, name (with or without '/'), or unique ID prefix, as dockerd resolves."""
        return self.records.get(ref)

    def all(self) -> list[Container]:
        return self.records.all()

    def _save(self, c: Container) -> None:
        self.records.save(c)

    def _event(self, c: Container, action: str, **extra: str) -> None:
        self.records.event(c, action, **extra)

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
            owner = self.records.name_owner(name)
            if owner is not None:
                raise Conflict(f'Conflict. The container name "/{name}" is already in use by container '
                               f'"{owner}". You have to remove (or rename) that container '
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
            while self.records.name_owner(name) is not None:
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
        self._add_dockerenv(c)
        self.records.add(c)
        self._event(c, "create")
        return {"Id": cid, "Warnings": []}

    def _add_dockerenv(self, c: Container) -> None:
        """As dockerd: an empty /.dockerenv, which scripts test to tell they run in a container.
        It is part of the container's filesystem (export shows it) but not a change of its own
        (diff and commit leave it out, as dockerd's init layer does)."""
        path = os.path.join(self.layers.upper_dir(c.id), DOCKERENV.lstrip("/"))
        if os.path.lexists(path):
            return
        with open(path, "x"):
            pass
        os.chmod(path, 0o755)
        if self.remap is not None and self.remap.applies(c.host_config):
            os.chown(path, *self.remap.idmap.to_host(0, 0))

    # --- lifecycle (container_lifecycle.py) ---------------------------------------------------
    async def start(self, ref: str) -> None:
        await self.lifecycle.start(ref)

    async def stop(self, ref: str, timeout: int | None = None, signal: str | None = None) -> None:
        await self.lifecycle.stop(ref, timeout, signal)

    async def kill(self, ref: str, signal: str | None = None) -> None:
        await self.lifecycle.kill(ref, signal)

    async def restart(self, ref: str, timeout: int | None = None, signal: str | None = None) -> None:
        await self.lifecycle.restart(ref, timeout, signal)

    async def settled(self, c: Container) -> None:
        """Wait for the cleanup of the container's last exit, if one is going on."""
        await self.lifecycle.settled(c)

    # --- removal and recovery (container_removal.py) ------------------------------------------
    async def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        await self.removal.remove(ref, force, volumes)

    async def recover(self) -> None:
        """Load every record; re-watch containers still running; settle those that exited
        while berthd was away (their exit code is in conmon's exit file)."""
        await self.removal.recover()

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
            raise InvalidParameter(f"Error when allocating new name: Invalid container name "
                                   f"(/{new_name.lstrip('/')}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        new_name = new_name.lstrip("/")
        if new_name == c.name:
            raise InvalidParameter("Renaming a container with the same name as its current name")
        owner = self.records.name_owner(new_name)
        if owner is not None:
            raise Conflict(f'Error when allocating new name: Conflict. The container name "/{new_name}" is '
                           f'already in use by container "{owner}". You have to remove (or rename) that '
                           "container to be able to reuse that name.")
        old = c.name
        self.records.rename(c, new_name)
        self._event(c, "rename", oldName="/" + old)

    # --- inspect ---------------------------------------------------------------------------
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
