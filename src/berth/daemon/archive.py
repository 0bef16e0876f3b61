"""The API's ArchiveBackend: `docker cp` both ways (GET/PUT/HEAD archive) and `docker export`.

Every path a client names is resolved inside the container's root with RESOLVE_IN_ROOT
(`runtime.rootpath`), then read or written only through descriptors with O_NOFOLLOW below that
(`snapshots.tarapply`): a symlink in the container, wherever it points, never leads outside the
root. A stopped container's root is mounted for the operation (under its lock, so a start waits
for it) and unmounted after.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import posixpath
import stat
import time
from collections.abc import AsyncIterator
from typing import Any

from berth.common.errors import InvalidParameter, NotFound
from berth.runtime import mount as mounts
from berth.runtime import rootpath, users
from berth.snapshots.layerformat import IdMapper
from berth.snapshots.tarapply import extract_archive
from berth.snapshots.tarwrite import write_path, write_tree

from .containers import ContainerService
from .model import Container
from .remap import Remap
from .streams import stream_from_thread

_ROOT_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
_MS_BIND = 4096
_MS_REC = 16384


@contextlib.asynccontextmanager
async def container_root(svc: ContainerService, c: Container, live: bool = False) -> AsyncIterator[int]:
    """An O_PATH descriptor of the container's root filesystem (merged view) for the block.
    A running container's mount is used as it is: should it exit meanwhile, its lazy unmount
    leaves our descriptor working. A stopped one is mounted here and held under its lock.
    `live`: for a running container, its root as its own processes see it (`/proc/PID/root`,
    with its volumes and /etc files mounted), as `docker cp` shows it."""
    rootfs = svc.rootfs(c)
    await svc.settled(c)  # a stopped one's cleanup may still be unmounting it
    await c.busy.acquire()
    locked = True
    mounted_here = False
    try:
        pid = int(c.state.get("Pid") or 0)
        if live and c.running and pid and not c.state["Restarting"] and mounts.is_mounted(rootfs):
            fd = os.open(f"/proc/{pid}/root", _ROOT_FLAGS)
            c.busy.release()
            locked = False
        elif c.running and mounts.is_mounted(rootfs):
            fd = os.open(rootfs, _ROOT_FLAGS)
            c.busy.release()
            locked = False
        else:
            remap = svc.remap if svc.remap is not None and svc.remap.applies(c.host_config) else None
            if not mounts.is_mounted(rootfs):
                m = svc.layers.mount_spec(c.id, c.top_chain)
                os.makedirs(rootfs, exist_ok=True)
                if remap is not None:  # as at its start: the owners its root sees, shifted
                    remap.mount_rootfs(m, rootfs)
                else:
                    mounts.mount(m.source, rootfs, m.type, m.options)
                mounted_here = True
            fd = os.open(rootfs, _ROOT_FLAGS)
            if mounted_here and live:
                if remap is not None:  # a missing mount point is made as the remapped root
                    remap.ns.as_root(lambda: _bind_volumes(fd, c.mounts))
                else:
                    _bind_volumes(fd, c.mounts)
        try:
            yield fd
        finally:
            os.close(fd)
    finally:
        if mounted_here:
            mounts.unmount(rootfs)
        if locked:
            c.busy.release()


def _bind_volumes(root_fd: int, points: list[dict[str, Any]]) -> None:
    """Bind the container's volumes and bind mounts into its (temporarily mounted) root, as at
    start, so `cp` of a stopped container sees them. Each target is resolved inside the root and
    mounted on through its descriptor; the lazy unmount of the root takes them all away."""
    for mp in points:
        source = mp.get("Source") or ""
        if mp.get("Type") not in ("volume", "bind") or not source:
            continue
        if mp.get("Subpath"):
            source = os.path.join(source, mp["Subpath"])
        if not os.path.exists(source):
            continue
        want_dir = os.path.isdir(source)
        dest = mp["Destination"]
        try:
            target = rootpath.open_in_root(root_fd, dest, os.O_PATH)
        except FileNotFoundError:
            pfd, base = rootpath.open_parent(root_fd, dest)
            try:
                if want_dir:
                    os.mkdir(base, 0o755, dir_fd=pfd)
                else:
                    os.close(os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644,
                                     dir_fd=pfd))
            finally:
                os.close(pfd)
            target = rootpath.open_in_root(root_fd, dest, os.O_PATH)
        try:
            mounts.mount(source, f"/proc/self/fd/{target}", "", [], _MS_BIND | _MS_REC)
        finally:
            os.close(target)


def go_file_mode(mode: int) -> int:
    """A stat mode as Go's os.FileMode (what docker puts in the path stat)."""
    out = stat.S_IMODE(mode) & 0o777
    if stat.S_ISDIR(mode):
        out |= 1 << 31
    elif stat.S_ISLNK(mode):
        out |= 1 << 27
    elif stat.S_ISFIFO(mode):
        out |= 1 << 25
    elif stat.S_ISSOCK(mode):
        out |= 1 << 24
    elif stat.S_ISBLK(mode):
        out |= 1 << 26
    elif stat.S_ISCHR(mode):
        out |= (1 << 26) | (1 << 21)
    if mode & stat.S_ISUID:
        out |= 1 << 23
    if mode & stat.S_ISGID:
        out |= 1 << 22
    if mode & stat.S_ISVTX:
        out |= 1 << 20
    return out


def _rfc3339_nano(ns: int) -> str:
    sec, frac = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


def encode_stat(st: dict[str, Any]) -> str:
    """The X-Docker-Container-Path-Stat header value."""
    return base64.b64encode(json.dumps(st, separators=(",", ":")).encode()).decode()


def _base_name(path: str) -> str:
    """Go's filepath.Base of the absolute path, as docker names the archive's top entry."""
    absolute = "/" + path.lstrip("/")
    if absolute.rstrip("/") == "":
        return "/"
    if absolute.endswith("/.") or absolute == "/.":
        return "."
    return absolute.rstrip("/").rsplit("/", 1)[-1]


class ArchiveAPI:
    def __init__(self, svc: ContainerService, tmp_dir: str) -> None:
        self.svc = svc
        self.tmp_dir = tmp_dir
        os.makedirs(tmp_dir, exist_ok=True)

    def _not_found(self, path: str, c: Container) -> NotFound:
        return NotFound(f"Could not find the file {path} in container {c.name}")

    def _stat(self, root_fd: int, c: Container, path: str) -> tuple[dict[str, Any], int, str]:
        """(path stat, O_PATH descriptor of the parent, last element); the caller closes the fd."""
        if not path:
            raise InvalidParameter("path cannot be empty")
        try:
            pfd, base = rootpath.open_parent(root_fd, path)
        except (FileNotFoundError, NotADirectoryError):
            raise self._not_found(path, c) from None
        try:
            st = os.stat(base, dir_fd=pfd, follow_symlinks=False) if base else os.stat(pfd)
        except (FileNotFoundError, NotADirectoryError):
            os.close(pfd)
            raise self._not_found(path, c) from None
        link = ""
        if stat.S_ISLNK(st.st_mode):
            link = self._link_target(root_fd, pfd, base, path)
        info = {"name": _base_name(path), "size": st.st_size, "mode": go_file_mode(st.st_mode),
                "mtime": _rfc3339_nano(st.st_mtime_ns), "linkTarget": link}
        return info, pfd, base

    def _link_target(self, root_fd: int, pfd: int, base: str, path: str) -> str:
        """Where a symlink leads, as a path in the container (resolved in its root; lexically
        from the link's directory when the target does not exist)."""
        root = os.readlink(f"/proc/self/fd/{root_fd}").rstrip("/")
        try:
            fd = rootpath.open_in_root(root_fd, path, os.O_PATH)
        except OSError:
            parent = os.readlink(f"/proc/self/fd/{pfd}")
            here = parent[len(root):] if parent.startswith(root + "/") else "/"
            return posixpath.normpath(posixpath.join(here, os.readlink(base, dir_fd=pfd)))
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        if target == root:
            return "/"
        return target[len(root):] if target.startswith(root + "/") else "/"

    async def stat_path(self, ref: str, path: str) -> str:
        c = self.svc.get(ref)
        async with container_root(self.svc, c, live=True) as root_fd:
            info, pfd, _ = self._stat(root_fd, c, path)
            os.close(pfd)
        return encode_stat(info)

    async def get_archive(self, ref: str, path: str) -> tuple[str, AsyncIterator[bytes]]:
        c = self.svc.get(ref)
        async with container_root(self.svc, c, live=True) as root_fd:
            info, pfd, _ = self._stat(root_fd, c, path)
            os.close(pfd)

        async def body() -> AsyncIterator[bytes]:
            async with container_root(self.svc, c, live=True) as root_fd:
                info, pfd, base = self._stat(root_fd, c, path)
                try:
                    arcname = info["name"]
                    id_map = self._shown_ids(c)
                    async for chunk in stream_from_thread(lambda out: write_path(pfd, base, arcname, out, id_map)):
                        yield chunk
                finally:
                    os.close(pfd)

        return encode_stat(info), body()

    async def put_archive(self, ref: str, path: str, body: AsyncIterator[bytes], no_overwrite_dir_non_dir: bool,
                          copy_uid_gid: bool) -> None:
        c = self.svc.get(ref)
        if not path:
            raise InvalidParameter("path cannot be empty")
        if c.host_config.get("ReadonlyRootfs"):
            raise InvalidParameter("container rootfs is marked read-only")
        spool = os.path.join(self.tmp_dir, "cp-" + os.urandom(8).hex())
        try:
            with open(spool, "wb") as f:
                async for chunk in body:
                    f.write(chunk)
            async with container_root(self.svc, c, live=True) as root_fd:
                try:
                    dest = rootpath.open_dir(root_fd, path)
                except FileNotFoundError:
                    raise self._not_found(path, c) from None
                except NotADirectoryError:
                    raise InvalidParameter("extraction point is not a directory") from None
                try:
                    owner = None
                    if copy_uid_gid:
                        uid, gid, _ = users.resolve_user(self.svc.rootfs(c), c.config.get("User") or "")
                        owner = (uid, gid)
                    remap = self._remap_of(c)
                    if remap is None:
                        await asyncio.to_thread(self._extract, spool, dest, no_overwrite_dir_non_dir, owner)
                    else:  # through the idmapped layers, as the remapped root, owners shifted
                        await asyncio.to_thread(remap.ns.as_root, lambda: self._extract(
                            spool, dest, no_overwrite_dir_non_dir, owner, remap.idmap.to_host))
                finally:
                    os.close(dest)
        finally:
            try:
                os.unlink(spool)
            except FileNotFoundError:
                pass
        self.svc._event(c, "extract-to-dir")

    @staticmethod
    def _extract(spool: str, dest: int, no_overwrite: bool, owner: tuple[int, int] | None,
                 id_map: IdMapper | None = None) -> None:
        with open(spool, "rb") as f:
            extract_archive(f, dest, no_overwrite, owner, id_map)

    def _remap_of(self, c: Container) -> Remap | None:
        """The remapping the container's root is mounted with (by its start or `container_root`):
        owners are shifted back and forth between the archive and its files."""
        remap = self.svc.remap
        return remap if remap is not None and remap.applies(c.host_config) else None

    def _shown_ids(self, c: Container) -> IdMapper | None:
        remap = self._remap_of(c)
        return remap.idmap.to_container if remap is not None else None

    def export(self, ref: str) -> AsyncIterator[bytes]:
        c = self.svc.get(ref)

        async def body() -> AsyncIterator[bytes]:
            async with container_root(self.svc, c) as root_fd:
                id_map = self._shown_ids(c)

                def produce(out: Any) -> None:
                    write_tree(root_fd, out, id_map=id_map)

                async for chunk in stream_from_thread(produce):
                    yield chunk
            self.svc._event(c, "export")

        return body()
