"""A build context directory as a tar stream for `POST /build`, honouring simple `.dockerignore` lines."""

from __future__ import annotations

import fnmatch
import io
import os
import tarfile
from pathlib import Path


def _patterns(root: Path) -> list[tuple[bool, str]]:
    path = root / ".dockerignore"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        out.append((negate, os.path.normpath(line.lstrip("!").strip("/"))))
    return out


def _ignored(rel: str, patterns: list[tuple[bool, str]]) -> bool:
    ignored = False
    for negate, pattern in patterns:
        if fnmatch.fnmatch(rel, pattern) or fnmatch.fnmatch(rel, pattern + "/*") or (
                pattern.startswith("**/") and fnmatch.fnmatch(rel, pattern[3:])):
            ignored = not negate
    return ignored


def _clean(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def context_tar(root: Path, dockerfile: str) -> bytes:
    patterns = _patterns(root)
    buf = io.BytesIO()
    keep = {os.path.normpath(dockerfile), ".dockerignore"}
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in sorted(dirnames + filenames):
                full = Path(dirpath) / name
                rel = os.path.relpath(full, root)
                if rel not in keep and _ignored(rel, patterns):
                    if name in dirnames:
                        dirnames.remove(name)
                    continue
                tar.add(str(full), arcname=rel, recursive=False, filter=_clean)
        dockerfile_path = Path(dockerfile)
        if dockerfile_path.is_absolute() and not str(dockerfile_path).startswith(str(root)):
            tar.add(str(dockerfile_path), arcname=".compose.Dockerfile", filter=_clean)
    return buf.getvalue()
