"""COPY/ADD layers for the builder, from read-only views of the context, stages and images
(`TreeView`, buildview.py).

`plan_copy` turns a COPY/ADD into the list of entries it writes (resolving wildcards and
docker's directory rules); `copy_digest` is the cache identity of that list (paths, types, modes,
contents, link targets; never mtimes or owners on the host); `write_copy_layer` writes the list as
a layer tar. Nothing here writes outside the temporary files the caller names.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import os
import posixpath
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, cast

from berth.snapshots.tarwrite import TarWriter

from .buildview import CopyError, TreeView

_WILDCARD = set("*?[")


@dataclass
class Entry:
    """One entry a COPY writes: `dest` is its path in the image (relative, no leading /)."""

    dest: str
    kind: str  # "dir" | "file" | "link"
    mode: int
    mtime: int
    src: str = ""  # host path of a file's contents
    data: bytes | None = None  # contents given inline (heredocs)
    link: str = ""


@dataclass
class CopyPlan:
    entries: list[Entry]
    parents: list[tuple[str, os.stat_result | None]]  # directories above the destination
    kind: str  # file | dir | multi (for the history line)
    uid: int = 0
    gid: int = 0
    archives: list[tuple[str, str]] | None = None  # (host path of a tar, destination dir)


def has_wildcard(path: str) -> bool:
    return any(ch in _WILDCARD for ch in path)


def _clean_src(src: str) -> str:
    cleaned = posixpath.normpath("/" + src).lstrip("/")
    return "" if cleaned == "." else cleaned


def expand_sources(view: TreeView, src: str, what: str) -> list[str]:
    """Source paths (relative) a COPY source names: itself, or what its wildcard matches."""
    rel = _clean_src(src)
    if not has_wildcard(rel):
        _, found = view.lookup(rel)
        if found is None:
            raise CopyError(f"COPY failed: file not found in {what}: stat {src}: file does not exist")
        return [rel]
    matches = [""]
    for part in rel.split("/"):
        nxt = []
        for base in matches:
            if not has_wildcard(part):
                nxt.append(posixpath.join(base, part) if base else part)
                continue
            _, found = view.lookup(base)
            if found is None or not stat.S_ISDIR(found.st.st_mode):
                continue
            for name in view.listdir(view.resolve(base)):
                if fnmatch.fnmatchcase(name, part):
                    nxt.append(posixpath.join(base, name) if base else name)
        matches = nxt
    matches = [m for m in matches if view.lookup(m)[1] is not None]
    return sorted(matches)


def _walk(view: TreeView, rel: str, dest: str, out: list[Entry]) -> None:
    resolved = view.resolve(rel, follow_last=False)
    found = view._lookup_exact(resolved)
    if found is None:
        return
    st = found.st
    if stat.S_ISDIR(st.st_mode):
        out.append(Entry(dest, "dir", stat.S_IMODE(st.st_mode), int(st.st_mtime)))
        for name in view.listdir(resolved):
            _walk(view, posixpath.join(resolved, name), posixpath.join(dest, name), out)
    elif stat.S_ISLNK(st.st_mode):
        out.append(Entry(dest, "link", 0o777, int(st.st_mtime), link=os.readlink(found.path)))
    elif stat.S_ISREG(st.st_mode):
        out.append(Entry(dest, "file", stat.S_IMODE(st.st_mode), int(st.st_mtime), src=found.path))


def is_archive(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(265)
    except OSError:
        return False
    if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00":
        return True
    return len(head) >= 262 and head[257:262] == b"ustar"


def plan_copy(sources: list[tuple[TreeView, str]], contents: list[tuple[str, bytes]], dest: str,
              workdir: str, image: TreeView | None, what: str, unpack: bool) -> CopyPlan:
    """What a COPY/ADD writes. `sources` are (view, path) pairs, `contents` heredoc files."""
    if not dest.startswith("/"):
        dest_abs = posixpath.join(workdir or "/", dest)
    else:
        dest_abs = dest
    dir_dest = dest.endswith("/") or dest in (".", "") or dest.endswith("/.")
    dest_rel = posixpath.normpath(dest_abs).lstrip("/")
    if dest_rel == ".":
        dest_rel = ""
    if image is not None and dest_rel:
        resolved = image.resolve(dest_rel)
        found = image._lookup_exact(resolved)
        if found is not None and stat.S_ISDIR(found.st.st_mode):
            dir_dest = True
        dest_rel = resolved
    elif not dest_rel:
        dir_dest = True
    expanded: list[tuple[TreeView, str]] = []
    for view, src in sources:
        expanded += [(view, s) for s in expand_sources(view, src, what)]
    if not expanded and not contents:
        raise CopyError("COPY failed: no source files were specified")
    if len(expanded) + len(contents) > 1 and not dir_dest:
        raise CopyError("When using COPY with more than one source file, the destination must be a "
                        "directory and end with a /")
    entries: list[Entry] = []
    archives: list[tuple[str, str]] = []
    kinds: set[str] = set()
    for view, rel in expanded:
        found = view.lookup(rel)[1]
        assert found is not None
        if stat.S_ISDIR(found.st.st_mode):
            kinds.add("dir")
            dir_dest = dir_dest or len(expanded) + len(contents) == 1
            base = view.resolve(rel)
            for name in view.listdir(base):
                _walk(view, posixpath.join(base, name), posixpath.join(dest_rel, name), entries)
        else:
            kinds.add("file")
            if unpack and stat.S_ISREG(found.st.st_mode) and is_archive(found.path):
                archives.append((found.path, dest_rel))
                dir_dest = True
                continue
            target = posixpath.join(dest_rel, posixpath.basename(rel)) if dir_dest else dest_rel
            _walk(view, view.resolve(rel), target, entries)
    for name, data in contents:
        kinds.add("file")
        target = posixpath.join(dest_rel, name) if dir_dest else dest_rel
        entries.append(Entry(target, "file", 0o644, 0, data=data))
    parents: list[tuple[str, os.stat_result | None]] = []
    top = dest_rel if dir_dest else posixpath.dirname(dest_rel)
    if top:
        parts = top.split("/")
        for i in range(1, len(parts) + 1):
            p = "/".join(parts[:i])
            found = image._lookup_exact(p) if image is not None else None
            parents.append((p, found.st if found is not None and stat.S_ISDIR(found.st.st_mode) else None))
    kind = "multi" if len(expanded) + len(contents) > 1 else (kinds.pop() if kinds else "file")
    return CopyPlan(entries, parents, kind, archives=archives)


def plan_dirs(path: str, image: TreeView | None) -> CopyPlan:
    """A layer that creates directory `path` and its missing parents (WORKDIR)."""
    parts = [p for p in path.split("/") if p]
    parents: list[tuple[str, os.stat_result | None]] = []
    for i in range(1, len(parts) + 1):
        p = "/".join(parts[:i])
        found = image._lookup_exact(p) if image is not None else None
        parents.append((p, found.st if found is not None and stat.S_ISDIR(found.st.st_mode) else None))
    return CopyPlan([], parents, "dir")


def apply_chmod(plan: CopyPlan, chmod: str) -> None:
    if not chmod:
        return
    try:
        mode = int(chmod, 8)
    except ValueError:
        raise CopyError(f"invalid chmod parameter: {chmod}") from None
    if mode > 0o7777:
        raise CopyError(f"invalid chmod parameter: {chmod}")
    for e in plan.entries:
        if e.kind != "link":
            e.mode = mode


def resolve_chown(chown: str, image: TreeView | None) -> tuple[int, int]:
    """`--chown=user:group` to numbers, names looked up in the image's /etc/passwd and group."""
    user, _, group = chown.partition(":")
    uid = _lookup_id(user, image, "etc/passwd", 2) if user else 0
    if group:
        gid = _lookup_id(group, image, "etc/group", 2)
    elif user.isdigit():
        gid = uid
    else:
        gid = _lookup_id(user, image, "etc/passwd", 3)
    return uid, gid


def _lookup_id(name: str, image: TreeView | None, file: str, field: int) -> int:
    if name.isdigit():
        return int(name)
    if image is not None:
        found = image.lookup(file)[1]
        if found is not None and stat.S_ISREG(found.st.st_mode):
            with open(found.path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    parts = line.rstrip("\n").split(":")
                    if len(parts) > field and parts[0] == name and parts[field].isdigit():
                        return int(parts[field])
    what = "user" if "passwd" in file else "group"
    raise CopyError(f"unable to convert uid/gid chown string to host mapping: can't find {what} {name}")


def copy_digest(plan: CopyPlan) -> str:
    """The content identity of a COPY: what is written, not where it came from on the host."""
    h = hashlib.sha256()
    for e in plan.entries:
        h.update(f"{e.kind}\0{e.dest}\0{e.mode:o}\0{e.link}\0".encode("utf-8", "surrogateescape"))
        if e.kind == "file":
            h.update(_file_digest(e).encode())
        h.update(b"\n")
    for path, dest in plan.archives or []:
        h.update(f"archive\0{dest}\0".encode("utf-8", "surrogateescape"))
        h.update(_path_digest(path).encode())
    h.update(f"owner\0{plan.uid}:{plan.gid}".encode())
    return h.hexdigest()


def _file_digest(e: Entry) -> str:
    if e.data is not None:
        return hashlib.sha256(e.data).hexdigest()
    return _path_digest(e.src)


def _path_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _info(name: str, kind: str, mode: int, mtime: int, uid: int, gid: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = {"dir": tarfile.DIRTYPE, "file": tarfile.REGTYPE, "link": tarfile.SYMTYPE}[kind]
    info.mode = mode
    info.mtime = mtime
    info.uid, info.gid = uid, gid
    info.uname = info.gname = ""
    return info


def write_copy_layer(plan: CopyPlan, out: BinaryIO) -> str:
    """Write the plan as a layer tar; returns its DiffID."""
    tw = TarWriter(out)
    written: set[str] = set()
    for path, st in plan.parents:
        if st is not None:
            info = _info(path + "/", "dir", stat.S_IMODE(st.st_mode), int(st.st_mtime), st.st_uid, st.st_gid)
        else:
            info = _info(path + "/", "dir", 0o755, 0, plan.uid, plan.gid)
        tw.add(info)
        written.add(path)
    for e in plan.entries:
        if e.dest in written and e.kind == "dir":
            continue
        name = e.dest + "/" if e.kind == "dir" else e.dest
        info = _info(name, e.kind, e.mode, e.mtime, plan.uid, plan.gid)
        if e.kind == "link":
            info.linkname = e.link
            tw.add(info)
        elif e.kind == "file":
            if e.data is not None:
                info.size = len(e.data)
                tw.add(info, io.BytesIO(e.data))
            else:
                with open(e.src, "rb") as f:
                    info.size = os.fstat(f.fileno()).st_size
                    tw.add(info, f)
        else:
            tw.add(info)
        written.add(e.dest)
    for path, dest in plan.archives or []:
        for info, data in _archive_entries(path, dest):
            tw.add(info, data)
    return tw.close()


def _archive_entries(path: str, dest: str) -> Iterator[tuple[tarfile.TarInfo, BinaryIO | None]]:
    """The entries of a local archive ADD unpacks, rebased under `dest` (never above it)."""
    try:
        tf = tarfile.open(path, "r:*")
    except tarfile.TarError as e:
        raise CopyError(f"ADD failed: cannot read archive: {e}") from None
    with tf:
        for info in tf:
            name = posixpath.normpath("/" + info.name).lstrip("/")
            if not name or name == ".":
                continue
            out = tarfile.TarInfo(posixpath.join(dest, name) if dest else name)
            out.type, out.mode, out.mtime = info.type, info.mode, int(info.mtime)
            out.uid, out.gid, out.uname, out.gname = info.uid, info.gid, "", ""
            if info.issym():
                out.linkname = info.linkname
            elif info.islnk():
                link = posixpath.normpath("/" + info.linkname).lstrip("/")
                out.linkname = posixpath.join(dest, link) if dest else link
            if info.isreg():
                out.size = info.size
                yield out, cast(BinaryIO, tf.extractfile(info))
            elif info.isdir() or info.issym() or info.islnk():
                if info.isdir():
                    out.name += "/"
                yield out, None


def materialize(view: TreeView, rel: str, dest: str) -> None:
    """Copy `rel` of a view (a directory tree or one file) to the host path `dest`, for a RUN's
    bind mount of a stage, an image or a writable copy of the context."""
    entries: list[Entry] = []
    _walk(view, view.resolve(rel), "", entries)
    for e in entries:
        path = os.path.join(dest, e.dest) if e.dest else dest
        if e.kind == "dir":
            os.makedirs(path, exist_ok=True)
        elif e.kind == "link":
            os.symlink(e.link, path)
        else:
            with open(e.src, "rb") as src, open(path, "wb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
    for e in reversed(entries):  # directories after what went into them
        if e.kind != "link":
            path = os.path.join(dest, e.dest) if e.dest else dest
            os.chmod(path, e.mode)
            os.utime(path, (e.mtime, e.mtime))
