"""Apply an image layer (a tar stream) onto an overlayfs layer directory, or an archive onto a
live directory (`docker cp`); the writing direction is tarwrite.py, decompression decompress.py.

Turns tar whiteouts (`.wh.<name>` and `.wh..wh..opq`) into overlay's (a 0/0 char device and the
`trusted.overlay.opaque` xattr), computes the DiffID of a layer (the sha256 of its uncompressed
tar, to EOF) and owns the extraction safety rules.

This module is the boundary between an untrusted archive and the host: it must never create,
change or remove anything outside `dest`, and never follow a symlink while writing. Every path is
opened component by component with O_NOFOLLOW from a descriptor of `dest`, so a symlink planted
by the archive (or already in `dest`) in a parent position is refused instead of followed.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, cast

from berth.common.errors import InvalidParameter, SystemError_
from berth.common.paths import EscapingPath, clean_relative

from .decompress import open_decompressed
from .layerformat import (
    CHUNK,
    DIR_FLAGS,
    OPAQUE_XATTR,
    OVERLAY_XATTR_PREFIX,
    PAX_XATTR_PREFIX,
    WHITEOUT_META_PREFIX,
    WHITEOUT_OPAQUE,
    WHITEOUT_PREFIX,
    IdMapper,
)
from .tarsplit import SplitWriter, TarSource

__all__ = [
    "AppliedLayer",
    "UnsafeArchive",
    "apply_layer",
    "extract_archive",
]

_DIR_CACHE = 256  # open directory descriptors kept between entries

# errors that mean the host is in trouble, not that the archive is bad
_HOST_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.ENOMEM, errno.EMFILE,
                errno.ENFILE}


class UnsafeArchive(InvalidParameter):
    """The archive tried to write outside its root or through a symlink."""


@dataclass(frozen=True)
class AppliedLayer:
    diff_id: str  # "sha256:<hex>" of the uncompressed tar stream, to EOF
    size: int  # regular files' and symlinks' sizes, as docker reports a layer's size
    tar_size: int  # bytes of uncompressed tar


# --- extraction ----------------------------------------------------------------------------------


def _clean(name: str, entry: str, what: str = "path") -> tuple[str, ...]:
    """Components of a relative archive path with `.`/`..` resolved lexically; refuses a path
    that is absolute or climbs above the root."""
    try:
        return clean_relative(name)
    except EscapingPath as e:
        raise UnsafeArchive(f"unsafe archive entry {entry!r}: {what} {name!r} {e}") from None


def _mtime_ns(info: tarfile.TarInfo) -> int:
    # A PAX mtime may carry nanoseconds; the float tarfile made of it cannot hold them all.
    text = info.pax_headers.get("mtime")
    if text:
        whole, _, frac = text.partition(".")
        try:
            sec = int(whole)
            ns = int((frac + "000000000")[:9]) if frac else 0
            return sec * 1_000_000_000 - ns if whole.startswith("-") else sec * 1_000_000_000 + ns
        except ValueError:
            pass
    return int(info.mtime) * 1_000_000_000


def _pax_xattrs(info: tarfile.TarInfo) -> list[tuple[str, bytes]]:
    out = []
    for key, value in info.pax_headers.items():
        if key.startswith(PAX_XATTR_PREFIX):
            # tarfile decoded the raw value with surrogateescape: this restores the exact bytes
            out.append((key[len(PAX_XATTR_PREFIX):], value.encode("utf-8", "surrogateescape")))
    return out


class _StrictTarInfo(tarfile.TarInfo):
    """tarfile ends an archive quietly at a corrupt or cut-off header past the first; a layer
    must not be applied half-way as if it were whole, so those become errors here."""

    @classmethod
    def fromtarfile(cls, tf: tarfile.TarFile) -> _StrictTarInfo:
        try:
            return cast(_StrictTarInfo, super().fromtarfile(tf))
        except (tarfile.InvalidHeaderError, tarfile.TruncatedHeaderError) as e:  # type: ignore[attr-defined]
            raise InvalidParameter(f"invalid layer tar: {e}") from None


class _Extractor:
    """`layer`: image-layer form (whiteouts become overlay whiteouts, `dest` is a layer
    directory); otherwise a plain copy into a live directory (`docker cp`), where a whiteout
    entry removes what it names, `no_overwrite_dir_non_dir` refuses to swap a directory for a
    non-directory or back, and `owner` replaces every entry's uid/gid."""

    def __init__(self, src: TarSource, dest: str | int, layer: bool = True, no_overwrite_dir_non_dir: bool = False,
                 owner: tuple[int, int] | None = None, id_map: IdMapper | None = None,
                 split: SplitWriter | None = None) -> None:
        self.src = src
        # a layer's tar-split: regular files' contents are recorded by reference, by path
        self.split = split
        self._refs: dict[tuple[str, ...], int] = {}
        if isinstance(dest, int):
            self.root_fd = os.open(".", DIR_FLAGS, dir_fd=dest)
        else:
            self.root_fd = os.open(dest, DIR_FLAGS)
        self.layer = layer
        self.no_overwrite_dir_non_dir = no_overwrite_dir_non_dir
        self.owner = owner
        self.id_map = id_map  # the archive's owners to host owners (a remapped container's)
        # descriptors of directories already walked, by path components; () is the root
        self._dirs: dict[tuple[str, ...], int] = {(): self.root_fd}
        # non-directories written by this archive: the only valid hardlink targets
        self._written: set[str] = set()
        # directory mtimes are set last: creating their contents would change them again
        self._dir_times: dict[tuple[str, ...], int] = {}
        self.size = 0

    def close(self) -> None:
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()

    # -- walking --

    def _drop_cached(self, prefix: tuple[str, ...]) -> None:
        n = len(prefix)
        for key in [k for k in self._dirs if k and k[:n] == prefix]:
            os.close(self._dirs.pop(key))

    def _dir_fd(self, parts: tuple[str, ...], entry: str, create: bool = True) -> int:
        """A descriptor of the directory `parts`, never following a symlink on the way; missing
        directories are created as docker does (0755, root-owned)."""
        # start from the deepest directory already open (iterative: paths may be very deep)
        depth = len(parts)
        while parts[:depth] not in self._dirs:
            depth -= 1
        fd = self._dirs[parts[:depth]]
        for d in range(depth + 1, len(parts) + 1):
            cached = parts[:d - 1] in self._dirs
            try:
                child = self._open_child(fd, parts[:d], entry, create)
            finally:
                if not cached:
                    os.close(fd)  # an intermediate directory past the cache's size
            fd = child
            # the result is always cached (the caller does not close it); the intermediate
            # ones only while the cache is small, so an absurdly deep path cannot exhaust fds
            if d == len(parts) or len(self._dirs) < _DIR_CACHE:
                self._dirs[parts[:d]] = fd
        return fd

    @staticmethod
    def _open_child(parent: int, parts: tuple[str, ...], entry: str, create: bool) -> int:
        name = parts[-1]
        try:
            return os.open(name, DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
            os.mkdir(name, 0o755, dir_fd=parent)
            os.chmod(name, 0o755, dir_fd=parent)  # mkdir applied the umask
            return os.open(name, DIR_FLAGS, dir_fd=parent)
        except OSError as e:
            if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            st = os.lstat(name, dir_fd=parent)
            where = "/".join(parts)
            if stat.S_ISLNK(st.st_mode):
                raise UnsafeArchive(
                    f"unsafe archive entry {entry!r}: refusing to write through the symlink "
                    f"{where!r}") from None
            raise InvalidParameter(f"archive entry {entry!r}: {where!r} is not a directory") from None

    def _remove(self, pfd: int, parts: tuple[str, ...]) -> None:
        """Remove whatever is at `parts` (a directory with its contents) without following links."""
        name = parts[-1]
        try:
            st = os.lstat(name, dir_fd=pfd)
        except FileNotFoundError:
            return
        stashed = self._stash(parts) if self._refs else ()
        if stat.S_ISDIR(st.st_mode):
            self._drop_cached(parts)
            shutil.rmtree(name, dir_fd=pfd)
        elif parts not in stashed:
            os.unlink(name, dir_fd=pfd)

    def _stash(self, parts: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
        """Files of this tar at or under `parts` are about to go; the tar still holds their bytes,
        so the tar-split's references to them move with them into its stash. Returns their paths."""
        n = len(parts)
        gone = tuple(k for k in self._refs if k[:n] == parts)
        if not gone:
            return gone
        assert self.split is not None
        stash_fd = os.open(self.split.stash_dir(), DIR_FLAGS)
        try:
            for k in gone:
                number = self._refs.pop(k)
                pfd = self._dir_fd(k[:-1], "/".join(k), create=False)
                os.rename(k[-1], str(number), src_dir_fd=pfd, dst_dir_fd=stash_fd)
        finally:
            os.close(stash_fd)
        return gone

    def _replacing(self, pfd: int, parts: tuple[str, ...], make: Callable[[], None]) -> None:
        """Run `make()`; if the name is taken, remove the old entry and run it again (a later
        entry replaces an earlier one, as in any tar)."""
        try:
            make()
        except FileExistsError:
            self._remove(pfd, parts)
            make()

    # -- metadata --

    def _set_xattrs(self, target: int | str, xattrs: list[tuple[str, bytes]], entry: str) -> None:
        for key, value in xattrs:
            if key.startswith(OVERLAY_XATTR_PREFIX):
                # overlay metadata only ever comes from whiteout entries: a forged redirect,
                # origin or metacopy xattr would make overlayfs look elsewhere
                continue
            try:
                if isinstance(target, int):
                    os.setxattr(target, key, value)
                else:
                    os.setxattr(target, key, value, follow_symlinks=False)
            except OSError as e:
                # docker too drops xattrs the filesystem or the file type cannot take
                if key.startswith("security.") or e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP,
                                                               errno.EPERM):
                    continue
                if e.errno in _HOST_ERRNOS:
                    raise
                raise InvalidParameter(f"archive entry {entry!r}: cannot set xattr {key!r}: "
                                       f"{e.strerror}") from None

    @staticmethod
    def _proc_path(pfd: int, name: str) -> str:
        # for xattrs of symlinks and device nodes, which have no safe descriptor to use
        return f"/proc/self/fd/{pfd}/{name}"

    # -- entries --

    def apply(self, info: tarfile.TarInfo, tf: tarfile.TarFile) -> None:
        entry = info.name
        if len(self._dirs) > _DIR_CACHE:
            self._drop_cached(())
        parts = _clean(info.name, entry)
        if not parts:
            return  # the root's own entry: the layer directory is not the archive's to change
        base = parts[-1]
        if self.owner is not None:
            info.uid, info.gid = self.owner
        if self.id_map is not None:
            info.uid, info.gid = self.id_map(info.uid, info.gid)
        if not self.layer:
            self._apply_copy(info, tf, parts)
            return
        if any(p.startswith(WHITEOUT_META_PREFIX) for p in parts):
            if base == WHITEOUT_OPAQUE and not any(p.startswith(WHITEOUT_META_PREFIX) for p in parts[:-1]):
                pfd = self._dir_fd(parts[:-1], entry)
                os.setxattr(pfd, OPAQUE_XATTR, b"y")
            # the rest (.wh..wh.plnk, .wh..wh.aufs) is aufs bookkeeping with no overlay meaning
            return
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(info, parts)
            return
        self._apply_entry(info, tf, parts)

    def _apply_copy(self, info: tarfile.TarInfo, tf: tarfile.TarFile, parts: tuple[str, ...]) -> None:
        base = parts[-1]
        if any(p.startswith(WHITEOUT_META_PREFIX) for p in parts):
            return
        if base.startswith(WHITEOUT_PREFIX):
            hidden = base[len(WHITEOUT_PREFIX):]
            if hidden not in ("", ".", ".."):
                self._remove(self._dir_fd(parts[:-1], info.name), parts[:-1] + (hidden,))
            return
        if self.no_overwrite_dir_non_dir:
            pfd = self._dir_fd(parts[:-1], info.name)
            try:
                st = os.lstat(base, dir_fd=pfd)
            except FileNotFoundError:
                st = None
            if st is not None and stat.S_ISDIR(st.st_mode) != info.isdir():
                what = ("directory", "non-directory") if stat.S_ISDIR(st.st_mode) else ("non-directory",
                                                                                       "directory")
                raise InvalidParameter(f"cannot overwrite {what[0]} {'/' + '/'.join(parts)!r} with "
                                       f"{what[1]} {info.name!r}")
        self._apply_entry(info, tf, parts)

    def _apply_entry(self, info: tarfile.TarInfo, tf: tarfile.TarFile, parts: tuple[str, ...]) -> None:
        entry = info.name
        pfd = self._dir_fd(parts[:-1], entry)
        path = "/".join(parts)
        if info.isdir():
            self._directory(info, pfd, parts)
        elif info.isreg():
            self._regular(info, tf, pfd, parts)
        elif info.issym():
            self._symlink(info, pfd, parts)
        elif info.islnk():
            self._hardlink(info, pfd, parts)
        elif info.ischr() or info.isblk() or info.isfifo():
            self._node(info, pfd, parts)
        else:
            raise InvalidParameter(f"archive entry {entry!r}: unsupported tar entry type {info.type!r}")
        if not info.isdir():
            self._written.add(path)

    def _whiteout(self, info: tarfile.TarInfo, parts: tuple[str, ...]) -> None:
        hidden = parts[-1][len(WHITEOUT_PREFIX):]
        if hidden in ("", ".", ".."):
            raise UnsafeArchive(f"unsafe archive entry {info.name!r}: whiteout of {hidden!r}")
        target = parts[:-1] + (hidden,)
        pfd = self._dir_fd(parts[:-1], info.name)
        # a whiteout replaces what a layer below (or an earlier apply into dest) left there
        self._remove(pfd, target)
        os.mknod(hidden, stat.S_IFCHR, 0, dir_fd=pfd)
        os.chown(hidden, info.uid, info.gid, dir_fd=pfd, follow_symlinks=False)
        # the entry's time, not the time of extraction: writing the layer back gives the same bytes
        ns = _mtime_ns(info)
        os.utime(hidden, ns=(ns, ns), dir_fd=pfd, follow_symlinks=False)

    def _directory(self, info: tarfile.TarInfo, pfd: int, parts: tuple[str, ...]) -> None:
        name = parts[-1]
        try:
            os.mkdir(name, 0o700, dir_fd=pfd)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(name, dir_fd=pfd).st_mode):
                self._remove(pfd, parts)
                os.mkdir(name, 0o700, dir_fd=pfd)
            # an existing directory keeps its contents; only its metadata changes
        fd = self._dir_fd(parts, info.name, create=False)
        os.fchown(fd, info.uid, info.gid)
        os.fchmod(fd, info.mode & 0o7777)
        self._set_xattrs(fd, _pax_xattrs(info), info.name)
        self._dir_times[parts] = _mtime_ns(info)

    def _regular(self, info: tarfile.TarInfo, tf: tarfile.TarFile, pfd: int,
                 parts: tuple[str, ...]) -> None:
        name = parts[-1]
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(name, flags, 0o600, dir_fd=pfd)
        except FileExistsError:
            self._remove(pfd, parts)
            fd = os.open(name, flags, 0o600, dir_fd=pfd)
        try:
            if info.size and info.sparse is None:  # type: ignore[attr-defined]
                if self.src.pos != info.offset_data:
                    raise InvalidParameter(f"archive entry {info.name!r}: its contents are not where its "
                                           "header says")
                ref = "/".join(parts) if self.split is not None else None
                if self.src.copy_to(fd, info.size, ref) != info.size:
                    raise InvalidParameter(f"archive entry {info.name!r} is truncated")
                if ref is not None:
                    self._refs[parts] = self.split.refs - 1  # type: ignore[union-attr]
            elif info.size:
                # a GNU sparse file: its holes are not in the tar, so tarfile maps the data
                src = tf.extractfile(info)
                assert src is not None  # isreg() entries always have a reader
                remaining = info.size
                while remaining:
                    data = src.read(min(CHUNK, remaining))
                    if not data:
                        raise InvalidParameter(f"archive entry {info.name!r} is truncated")
                    remaining -= len(data)
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
            # chown before chmod (chown clears setuid bits) and before xattrs (it clears
            # security.capability)
            os.fchown(fd, info.uid, info.gid)
            os.fchmod(fd, info.mode & 0o7777)
            self._set_xattrs(fd, _pax_xattrs(info), info.name)
            ns = _mtime_ns(info)
            os.utime(fd, ns=(ns, ns))
        finally:
            os.close(fd)
        self.size += info.size

    def _symlink(self, info: tarfile.TarInfo, pfd: int, parts: tuple[str, ...]) -> None:
        target = info.linkname
        if not target:
            raise InvalidParameter(f"archive entry {info.name!r}: symlink with an empty target")
        if not target.startswith("/"):
            # An absolute target is resolved inside the container's root at run time; a relative
            # one that climbs out of the layer is only ever an attack (docker refuses it too).
            try:
                _clean("/".join(parts[:-1] + (target,)), info.name)
            except UnsafeArchive:
                raise UnsafeArchive(f"unsafe archive entry {info.name!r}: symlink target {target!r} "
                                    f"leaves the root") from None
        name = parts[-1]

        def make() -> None:
            os.symlink(target, name, dir_fd=pfd)
        self._replacing(pfd, parts, make)
        self.size += len(os.fsencode(target))  # docker's layer size counts a link's own bytes
        os.chown(name, info.uid, info.gid, dir_fd=pfd, follow_symlinks=False)
        self._set_xattrs(self._proc_path(pfd, name), _pax_xattrs(info), info.name)
        ns = _mtime_ns(info)
        os.utime(name, ns=(ns, ns), dir_fd=pfd, follow_symlinks=False)

    def _hardlink(self, info: tarfile.TarInfo, pfd: int, parts: tuple[str, ...]) -> None:
        tparts = _clean(info.linkname, info.name, "hardlink target")
        tpath = "/".join(tparts)
        if not tparts or tpath not in self._written:
            raise UnsafeArchive(f"unsafe archive entry {info.name!r}: hardlink target {info.linkname!r} "
                                f"is not an earlier entry of this layer")
        if tparts == parts:
            return
        name = parts[-1]

        def make() -> None:
            # looked up after any removal: the old entry may have held the target's directory
            tpfd = self._dir_fd(tparts[:-1], info.name, create=False)
            os.link(tparts[-1], name, src_dir_fd=tpfd, dst_dir_fd=pfd, follow_symlinks=False)
        try:
            self._replacing(pfd, parts, make)
        except FileNotFoundError:
            raise InvalidParameter(f"archive entry {info.name!r}: hardlink target {info.linkname!r} "
                                   f"no longer exists") from None

    def _node(self, info: tarfile.TarInfo, pfd: int, parts: tuple[str, ...]) -> None:
        kind = stat.S_IFCHR if info.ischr() else stat.S_IFBLK if info.isblk() else stat.S_IFIFO
        dev = os.makedev(info.devmajor, info.devminor) if kind != stat.S_IFIFO else 0
        name = parts[-1]

        def make() -> None:
            os.mknod(name, kind | 0o600, dev, dir_fd=pfd)
        self._replacing(pfd, parts, make)
        os.chown(name, info.uid, info.gid, dir_fd=pfd, follow_symlinks=False)
        os.chmod(name, info.mode & 0o7777, dir_fd=pfd)  # just created by us: not a symlink
        self._set_xattrs(self._proc_path(pfd, name), _pax_xattrs(info), info.name)
        ns = _mtime_ns(info)
        os.utime(name, ns=(ns, ns), dir_fd=pfd, follow_symlinks=False)

    def finish(self) -> None:
        for parts, ns in self._dir_times.items():
            if len(self._dirs) > _DIR_CACHE:
                self._drop_cached(())
            # a later entry may have replaced the directory or a parent: then there is nothing to do
            try:
                pfd = self._dir_fd(parts[:-1], "/".join(parts), create=False)
                if stat.S_ISDIR(os.lstat(parts[-1], dir_fd=pfd).st_mode):
                    os.utime(parts[-1], ns=(ns, ns), dir_fd=pfd, follow_symlinks=False)
            except (OSError, InvalidParameter):
                continue


def apply_layer(stream: BinaryIO, dest: str, split_dir: str | None = None) -> AppliedLayer:
    """Unpack one layer tar (plain, gzip or zstd) onto `dest` in overlay form; with `split_dir`,
    write there the tar-split that rebuilds the tar from `dest` (tarsplit.py).

    Streams: file contents are copied in bounded chunks. Raises `UnsafeArchive` for any entry
    that would escape `dest` or write through a symlink, `InvalidParameter` for a malformed
    archive. On error `dest` is left partly written: the caller owns it and removes it."""
    os.makedirs(dest, exist_ok=True)
    split = SplitWriter(split_dir) if split_dir is not None else None
    try:
        src = TarSource(open_decompressed(stream), split)
        ex = _Extractor(src, dest, split=split)
        try:
            _run_extractor(src, ex, "layer")
            # the DiffID covers everything up to EOF, including the end-of-archive blocks and padding
            src.drain()
        finally:
            ex.close()
    finally:
        if split is not None:
            split.close()
    return AppliedLayer(diff_id=src.digest(), size=ex.size, tar_size=src.count)


def extract_archive(stream: BinaryIO, dest_fd: int, no_overwrite_dir_non_dir: bool = False,
                    owner: tuple[int, int] | None = None, id_map: IdMapper | None = None) -> None:
    """Unpack a tar (plain or compressed) into the live directory `dest_fd` (`docker cp` into a
    container), with the same safety rules as `apply_layer`: nothing outside `dest_fd` is
    created, changed or removed and no symlink is followed. Whiteout entries remove what they
    name; `owner` (uid, gid) replaces the archive's owners."""
    src = TarSource(open_decompressed(stream))
    ex = _Extractor(src, dest_fd, layer=False, no_overwrite_dir_non_dir=no_overwrite_dir_non_dir, owner=owner,
                    id_map=id_map)
    try:
        _run_extractor(src, ex, "archive")
    finally:
        ex.close()


def _run_extractor(src: TarSource, ex: _Extractor, what: str) -> None:
    try:
        # "r:" reads headers straight from `src` (no read-ahead of its own), so the extractor
        # finds each file's contents next in `src` and copies them without tarfile in between
        tf = tarfile.open(fileobj=cast(BinaryIO, src), mode="r:",
                          encoding="utf-8", errors="surrogateescape", tarinfo=_StrictTarInfo)
    except tarfile.ReadError as e:
        if src.count == 0:  # a zero-byte layer is an empty one
            return
        raise InvalidParameter(f"{what} is not a tar archive: {e}") from None
    with tf:
        while True:
            try:
                info = tf.next()
            except tarfile.TarError as e:
                raise InvalidParameter(f"invalid {what} tar: {e}") from None
            if info is None:
                break
            # tarfile still remembers every member; a big layer has hundreds of thousands
            tf.members.clear()  # type: ignore[attr-defined]
            try:
                ex.apply(info, tf)
            except tarfile.TarError as e:
                raise InvalidParameter(f"invalid {what} tar at {info.name!r}: {e}") from None
            except OSError as e:
                if e.errno in _HOST_ERRNOS:
                    raise SystemError_(f"cannot apply {what} entry {info.name!r}: {e}") from e
                raise InvalidParameter(f"cannot apply {what} entry {info.name!r}: {e.strerror}") from e
        ex.finish()
