"""Where a process's cgroups are, and keeping the kernel's cgroup-migration lock warm.

Moving a process into a cgroup by `cgroup.procs` takes a global lock whose first use after a
quiet spell waits for an RCU grace period (~10 ms here, measured: 7.5-12.5 ms for the first of a
container's ten hierarchies, 0.03 ms for the others). `runc create` moves the container's init
that way, so while it runs berth keeps the lock in use with a no-op move (berthd into the cgroup
it is already in) every few ms: runc then finds it warm (`runc create` 30 -> 26 ms, 39 -> 29 ms
measured side by side). Nothing changes but timing: the moved process is where it was.
"""

from __future__ import annotations

import os
import threading

WARM_EVERY = 0.004  # seconds: well inside a grace period, so the lock never cools while runc runs


def cgroup_dirs(pid: int) -> tuple[list[str], list[str], bool]:
    """The directories, in the host's view, of every cgroup `pid` is in: the v1 ones, the v2 one,
    and whether that v2 cgroup has controllers enabled (a pure v2 host) or none (the side mount of
    a hybrid host, where membership accounts for nothing)."""
    mounts: list[tuple[str, str, set[str]]] = []  # (mount root, mount point, controllers or {""} for v2)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fields, tail = pre.split(), post.split()
            if tail[0] == "cgroup2":
                mounts.append((fields[3], fields[4], {""}))
            elif tail[0] == "cgroup":
                opts = set(tail[2].split(","))
                mounts.append((fields[3], fields[4], opts))
    v1: list[str] = []
    v2: list[str] = []
    v2_controllers = False
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            wanted = set(controllers.split(",")) if controllers else {""}
            for root, point, opts in mounts:
                if wanted <= opts if controllers else opts == {""}:
                    rel = os.path.relpath(path, root) if root != "/" else path.lstrip("/")
                    if rel.startswith(".."):
                        continue
                    where = os.path.join(point, rel)
                    (v1 if controllers else v2).append(where)
                    if not controllers:  # what the container's own v2 cgroup has enabled in it
                        try:
                            with open(os.path.join(where, "cgroup.controllers")) as c:
                                v2_controllers = bool(c.read().split())
                        except OSError:
                            v2_controllers = True  # unknown: the safe order
                    break
    return v1, v2, v2_controllers



def _own_procs_file() -> str | None:
    """The `cgroup.procs` of a cgroup this process is in now (the first hierarchy listed): read
    each time, so a berthd moved elsewhere after its start is never moved back."""
    try:
        v1, v2, _ = cgroup_dirs(os.getpid())
    except (OSError, ValueError):
        return None
    dirs = v1 or v2
    return os.path.join(dirs[0], "cgroup.procs") if dirs else None


class LockWarmer:
    """`with LockWarmer():` around a runtime call that moves processes between cgroups."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LockWarmer:
        path = _own_procs_file()
        if path is not None:
            self._thread = threading.Thread(target=self._run, args=(path,), name="berth-cgroup-warm", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    def _run(self, path: str) -> None:
        me = str(os.getpid())
        while not self._stop.is_set():
            try:
                with open(path, "w") as f:
                    f.write(me)
            except OSError:
                return  # not allowed here (a read-only cgroupfs, say): runc just pays the wait
            self._stop.wait(WARM_EVERY)
