"""Write a directory back as a tar stream: a layer directory in image-layer form (overlay
whiteouts and opaque directories turned into their `.wh.` names), a mounted tree as `docker
export` does, or one path as `GET /containers/{id}/archive` does.

Never follows a symlink: every directory is opened with O_NOFOLLOW from its parent.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Collection, Iterator
from typing import BinaryIO, cast

from berth.common.errors import SystemError_

from .layerformat import (
    CHUNK,
    DIR_FLAGS,
    OPAQUE_XATTR,
    OVERLAY_XATTR_PREFIX,
    PAX_XATTR_PREFIX,
    WHITEOUT_OPAQUE,
    WHITEOUT_PREFIX,
    IdMapper,
)

_BLOCK = tarfile.BLOCKSIZE


class TarWriter:
    """Writes a tar stream to a possibly non-seekable `out`: each header is written with its final
    size, contents stream through in chunks. Counts and (optionally) hashes every byte written.
    The end is two zero blocks with no record padding, as Go's archive/tar writes it."""

    def __init__(self, out: BinaryIO, digest: bool = True, id_map: IdMapper | None = None) -> None:
        self._out = out
        self._hash = hashlib.sha256() if digest else None
        self.written = 0
        self.id_map = id_map  # host owners to those the archive shows (a remapped container's)

    def _emit(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            n = self._out.write(view)
            view = view[len(view) if n is None else n:]
        if self._hash is not None:
            self._hash.update(data)
        self.written += len(data)

    def add(self, info: tarfile.TarInfo, data: BinaryIO | None = None) -> None:
        """Write `info`; for a regular file exactly `info.size` bytes are read from `data`."""
        if self.id_map is not None:
            info.uid, info.gid = self.id_map(info.uid, info.gid)
        self._emit(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        if info.type not in tarfile.REGULAR_TYPES or not info.size:
            return
        if data is None:
            raise ValueError(f"tar entry {info.name!r} needs its contents")
        remaining = info.size
        while remaining:
            chunk = data.read(min(CHUNK, remaining))
            if not chunk:
                raise SystemError_(f"{info.name!r} ended {remaining} bytes early while being archived")
            self._emit(chunk)
            remaining -= len(chunk)
        pad = -info.size % _BLOCK
        if pad:
            self._emit(bytes(pad))

    def add_bytes(self, name: str, data: bytes, mode: int = 0o644) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = mode
        info.mtime = 0
        self.add(info, io.BytesIO(data))

    def add_dir(self, name: str, mode: int = 0o755) -> None:
        info = tarfile.TarInfo(name)
        info.type = tarfile.DIRTYPE
        info.mode = mode
        info.mtime = 0
        self.add(info)

    def close(self) -> str:
        """Write the end-of-archive blocks; the sha256 digest of everything written ("" when
        not hashing)."""
        self._emit(bytes(2 * _BLOCK))
        return "sha256:" + self._hash.hexdigest() if self._hash is not None else ""


def _header(name: str, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid = st.st_uid
    info.gid = st.st_gid
    info.uname = info.gname = ""  # numeric ids only: names mean nothing inside the image
    info.mtime = int(st.st_mtime)  # seconds, as docker writes layers
    return info


def _read_xattrs(path: str) -> dict[str, str]:
    try:
        keys = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return {}
        raise
    out: dict[str, str] = {}
    for key in sorted(keys):
        # overlay's own xattrs are translated (opaque) or meaningless elsewhere (origin, impure);
        # selinux labels belong to the host, not to the image
        if key.startswith(OVERLAY_XATTR_PREFIX) or key == "security.selinux":
            continue
        try:
            value = os.getxattr(path, key, follow_symlinks=False)
        except OSError:
            continue
        out[PAX_XATTR_PREFIX + key] = value.decode("utf-8", "surrogateescape")
    return out


class _LayerWalker:
    def __init__(self, tw: TarWriter, exclude: Collection[str] = ()) -> None:
        self._tw = tw
        self._links: dict[tuple[int, int], str] = {}  # (dev, inode) -> first name written
        self._exclude = set(exclude)

    def walk_root(self, root: int, prefix: str = "") -> None:
        if self._is_opaque(root):
            self._opaque_marker(prefix, os.fstat(root))
        # an explicit stack, not recursion: a container can nest directories deeper than
        # Python's recursion limit
        stack: list[tuple[int, str, Iterator[str]]] = [(root, prefix, self._names(root))]
        try:
            while stack:
                dfd, prefix, names = stack[-1]
                name = next(names, None)
                if name is None:
                    stack.pop()
                    if dfd != root:
                        os.close(dfd)
                    continue
                if prefix + name in self._exclude:
                    continue
                try:
                    st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                except FileNotFoundError:
                    continue  # removed by a running container while we walked
                if not stat.S_ISDIR(st.st_mode):
                    self._entry(dfd, prefix, name, st)
                    continue
                rel = prefix + name
                self.dir_header(dfd, name, rel, st)
                fd = os.open(name, DIR_FLAGS, dir_fd=dfd)
                stack.append((fd, rel + "/", iter(())))
                if self._is_opaque(fd):
                    self._opaque_marker(rel + "/", st)
                stack[-1] = (fd, rel + "/", self._names(fd))
        finally:
            for dfd, _, _ in stack:
                if dfd != root:
                    os.close(dfd)

    def dir_header(self, dfd: int, name: str, rel: str, st: os.stat_result) -> None:
        info = _header(rel, st)
        info.type = tarfile.DIRTYPE
        info.pax_headers = _read_xattrs(f"/proc/self/fd/{dfd}/{name}")
        self._tw.add(info)

    @staticmethod
    def _names(dfd: int) -> Iterator[str]:
        with os.scandir(dfd) as it:
            return iter(sorted((e.name for e in it), key=os.fsencode))

    def _entry(self, dfd: int, prefix: str, name: str, st: os.stat_result, arcname: str = "") -> None:
        """A non-directory (`arcname`: its name in the archive, if not `prefix + name`)."""
        rel = arcname or prefix + name
        mode = st.st_mode
        proc = f"/proc/self/fd/{dfd}/{name}"
        if stat.S_ISCHR(mode) and st.st_rdev == 0:
            # overlay whiteout -> an empty `.wh.<name>` file (overlay may share one whiteout inode
            # between many names, so these never become hardlinks)
            info = _header(prefix + WHITEOUT_PREFIX + name, st)
            self._tw.add(info)
            return
        if stat.S_ISSOCK(mode):
            return  # sockets cannot be archived; docker skips them too
        info = _header(rel, st)
        if st.st_nlink > 1:
            first = self._links.get((st.st_dev, st.st_ino))
            if first is not None:
                info.type = tarfile.LNKTYPE
                info.linkname = first
                self._tw.add(info)
                return
            self._links[(st.st_dev, st.st_ino)] = rel
        info.pax_headers = _read_xattrs(proc)
        if stat.S_ISREG(mode):
            info.size = st.st_size
            # O_NONBLOCK: should a running container swap the file for a FIFO, do not hang
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
            with open(fd, "rb", buffering=0) as f:
                now = os.fstat(fd)
                if (now.st_ino, now.st_dev) != (st.st_ino, st.st_dev) or not stat.S_ISREG(now.st_mode):
                    raise SystemError_(f"{rel!r} changed while being archived")
                self._tw.add(info, cast(BinaryIO, f))
        elif stat.S_ISLNK(mode):
            info.type = tarfile.SYMTYPE
            info.linkname = os.readlink(name, dir_fd=dfd)
            self._tw.add(info)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            info.devmajor = os.major(st.st_rdev)
            info.devminor = os.minor(st.st_rdev)
            self._tw.add(info)
        elif stat.S_ISFIFO(mode):
            info.type = tarfile.FIFOTYPE
            self._tw.add(info)

    @staticmethod
    def _is_opaque(fd: int) -> bool:
        try:
            return os.getxattr(fd, OPAQUE_XATTR) == b"y"
        except OSError:
            return False

    def _opaque_marker(self, prefix: str, st: os.stat_result) -> None:
        info = _header(prefix + WHITEOUT_OPAQUE, st)
        info.mode = stat.S_IMODE(st.st_mode) & 0o777
        self._tw.add(info)


def write_layer(upper_dir: str, out: BinaryIO, exclude: Collection[str] = ()) -> str:
    """Tar `upper_dir` (an overlay upper or layer directory) into `out` in image-layer form:
    sorted, numeric owners, whiteouts and opaque directories in their `.wh.` tar form,
    hardlinks by inode, xattrs as PAX records. `exclude`: relative paths left out (with what
    is below them). Returns the DiffID of what was written."""
    root = os.open(upper_dir, DIR_FLAGS)
    try:
        return write_tree(root, out, exclude)
    finally:
        os.close(root)


def write_tree(root_fd: int, out: BinaryIO, exclude: Collection[str] = (), id_map: IdMapper | None = None) -> str:
    """`write_layer` of the directory open as `root_fd`; on a mounted overlay (no whiteouts to
    see) this is the flattened filesystem, as `docker export` writes it."""
    tw = TarWriter(out, id_map=id_map)
    fd = os.open(".", DIR_FLAGS, dir_fd=root_fd)
    try:
        _LayerWalker(tw, exclude).walk_root(fd)
    finally:
        os.close(fd)
    return tw.close()


def write_path(parent_fd: int, name: str, arcname: str, out: BinaryIO, id_map: IdMapper | None = None) -> None:
    """Tar one entry, `name` in the directory `parent_fd` ("" for that directory itself), and
    everything below it when it is a directory, under the archive name `arcname` (docker's
    rebase: `GET /containers/{id}/archive`). Never follows a symlink: a link is archived as one."""
    tw = TarWriter(out, digest=False, id_map=id_map)
    walker = _LayerWalker(tw)
    if name:
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    else:
        st = os.stat(parent_fd)
    if stat.S_ISDIR(st.st_mode):
        fd = os.open(name or ".", DIR_FLAGS, dir_fd=parent_fd)
        try:
            walker.dir_header(fd, ".", arcname, st)
            walker.walk_root(fd, "" if arcname == "/" else arcname.rstrip("/") + "/")
        finally:
            os.close(fd)
    else:
        walker._entry(parent_fd, "", name, st, arcname=arcname)
    tw.close()
