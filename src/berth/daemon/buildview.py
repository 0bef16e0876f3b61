"""A read-only view of an image's filesystem for the builder, straight from its overlay layer
directories (top first, whiteouts and opaque directories honoured), so `COPY --from`, RUN's
bind mounts and destination checks need no mount. Reads only."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from berth.common.errors import InvalidParameter

_MAX_LINKS = 40


class CopyError(InvalidParameter):
    pass


@dataclass(frozen=True)
class Found:
    path: str  # the real host path of the entry, in whichever layer holds it
    st: os.stat_result


class TreeView:
    """A merged, read-only view of layer directories (`dirs` top first, overlay form)."""

    def __init__(self, dirs: list[str]) -> None:
        self.dirs = dirs

    def _lookup_exact(self, rel: str) -> Found | None:
        """The entry at `rel` (no symlink resolution): the topmost layer that has it."""
        parts = [p for p in rel.split("/") if p]
        if not parts:
            return Found(self.dirs[0], os.stat(self.dirs[0])) if self.dirs else None
        for d in self.dirs:
            path = os.path.join(d, *parts)
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                if self._hidden_below(d, parts):
                    return None
                continue
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                return None  # a whiteout
            return Found(path, st)
        return None

    @staticmethod
    def _hidden_below(d: str, parts: list[str]) -> bool:
        """Does layer `d` hide lower layers' `parts` (an opaque or whiteout parent)?"""
        for i in range(1, len(parts)):
            p = os.path.join(d, *parts[:i])
            try:
                st = os.lstat(p)
            except OSError:
                return False
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                return True
            if not stat.S_ISDIR(st.st_mode):
                return True
            try:
                if os.getxattr(p, "trusted.overlay.opaque", follow_symlinks=False) == b"y":
                    return True
            except OSError:
                pass
        return False

    def resolve(self, rel: str, follow_last: bool = True) -> str:
        """`rel` with every symlink on the way resolved inside the view (as a chroot would)."""
        parts = [p for p in rel.split("/") if p and p != "."]
        done: list[str] = []
        hops = 0
        while parts:
            name = parts.pop(0)
            if name == "..":
                if done:
                    done.pop()
                continue
            found = self._lookup_exact("/".join([*done, name]))
            if found is not None and stat.S_ISLNK(found.st.st_mode) and (parts or follow_last):
                hops += 1
                if hops > _MAX_LINKS:
                    raise CopyError(f"too many levels of symbolic links: {rel}")
                target = os.readlink(found.path)
                if target.startswith("/"):
                    done = []
                parts = [p for p in target.split("/") if p and p != "."] + parts
                continue
            done.append(name)
        return "/".join(done)

    def lookup(self, rel: str, follow_last: bool = True) -> tuple[str, Found | None]:
        resolved = self.resolve(rel, follow_last)
        return resolved, self._lookup_exact(resolved)

    def listdir(self, rel: str) -> list[str]:
        parts = [p for p in rel.split("/") if p]
        names: set[str] = set()
        hidden: set[str] = set()
        for d in self.dirs:
            path = os.path.join(d, *parts)
            try:
                st = os.lstat(path)
            except OSError:
                if self._hidden_below(d, parts):
                    break
                continue
            if not stat.S_ISDIR(st.st_mode):
                break
            for name in os.listdir(path):
                if name in names or name in hidden:
                    continue
                est = os.lstat(os.path.join(path, name))
                if stat.S_ISCHR(est.st_mode) and est.st_rdev == 0:
                    hidden.add(name)
                else:
                    names.add(name)
            try:
                if os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y":
                    break
            except OSError:
                pass
        return sorted(names)
