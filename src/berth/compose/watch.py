"""`compose watch`: follow the services' `develop.watch` rules while the project runs.

A rule names a path on the host and an action: `sync` copies changed files into the service's
running containers at `target` (and removes deleted ones), `rebuild` builds the image again and
recreates the service, `sync+restart` syncs then restarts, `restart` restarts, `sync+exec` syncs
then runs `exec.command`. watchfiles (inotify) says when something under the rules' paths moved;
what changed is then found by comparing snapshots (mtime and size per file), so ignore rules
apply in one place and a burst of changes is handled as one batch, rebuilds before syncs.
A path it cannot watch (missing, or past the inotify limits) has the snapshots polled instead.
"""

from __future__ import annotations

import fnmatch
import io
import os
import tarfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from berth.compose.errors import ComposeError

if TYPE_CHECKING:
    from berth.compose.executor import Compose
    from berth.compose.model import Project

ACTIONS = ("sync", "rebuild", "sync+restart", "restart", "sync+exec")
Snapshot = dict[str, tuple[int, int]]  # path relative to the rule's path -> (mtime_ns, size)


@dataclass(frozen=True)
class Rule:
    service: str
    path: Path
    action: str
    target: str | None = None
    ignore: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    include: tuple[str, ...] = ()  # when given, only matching files are watched


def rules(project: Project, services: list[str] | None = None) -> list[Rule]:
    out = []
    for name, svc in project.services.items():
        if services and name not in services:
            continue
        for i, entry in enumerate((svc.config.get("develop") or {}).get("watch") or []):
            where = f"service {name!r}: develop.watch[{i}]"
            action = entry.get("action")
            if action not in ACTIONS:
                raise ComposeError(f"{where}: action must be one of {', '.join(ACTIONS)}, got {action!r}")
            if action.startswith("sync") and not entry.get("target"):
                raise ComposeError(f"{where}: a {action} rule needs a target")
            path = Path(str(entry["path"]))
            command = (entry.get("exec") or {}).get("command") or ()
            out.append(Rule(name, path if path.is_absolute() else project.working_dir / path, action,
                            entry.get("target"), _patterns(entry.get("ignore")),
                            tuple([command] if isinstance(command, str) else command), _patterns(entry.get("include"))))
    if not out:
        raise ComposeError("none of the selected services has a develop.watch rule")
    return out


def _patterns(value: Any) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(str(v) for v in value or ())


def _ignored(rel: str, patterns: tuple[str, ...]) -> bool:
    parts = rel.split("/")
    return any(fnmatch.fnmatch(rel, p.strip("/")) or fnmatch.fnmatch(parts[0], p.strip("/")) for p in patterns)


def snapshot(rule: Rule) -> Snapshot:
    if rule.path.is_file():
        st = rule.path.stat()
        return {"": (st.st_mtime_ns, st.st_size)}
    out: Snapshot = {}
    for dirpath, dirnames, filenames in os.walk(rule.path):
        rel_dir = os.path.relpath(dirpath, rule.path)
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = [d for d in dirnames if not _ignored(rel_dir + d, rule.ignore)]
        for name in filenames:
            rel = rel_dir + name
            if _ignored(rel, rule.ignore) or (rule.include and not _ignored(rel, rule.include)):
                continue
            try:
                st = os.stat(os.path.join(dirpath, name))
            except OSError:  # removed while walking: the next poll sees it gone
                continue
            out[rel] = (st.st_mtime_ns, st.st_size)
    return out


def changes(old: Snapshot, new: Snapshot) -> tuple[list[str], list[str]]:
    """(changed or added, deleted) between two snapshots, sorted."""
    changed = sorted(k for k, v in new.items() if old.get(k) != v)
    deleted = sorted(k for k in old if k not in new)
    return changed, deleted


def _container_path(rule: Rule, rel: str) -> str:
    target = str(rule.target).rstrip("/")
    return f"{target}/{rel}" if rel else target


def sync_tar(rule: Rule, changed: list[str]) -> bytes:
    """The changed files as a tar to unpack at `/`, each at its place under the rule's target."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for rel in changed:
            src = rule.path / rel if rel else rule.path
            if src.is_file():
                tar.add(str(src), arcname=_container_path(rule, rel).lstrip("/"), recursive=False)
    return buf.getvalue()


class Watcher:
    def __init__(self, compose: Compose, rules: list[Rule], emit: Callable[[str], None], poll: float = 0.3) -> None:
        self.compose = compose
        self.rules = rules
        self.emit = emit
        self.poll = poll
        self._snaps = {i: snapshot(r) for i, r in enumerate(rules)}

    def run(self, stop: threading.Event) -> None:
        from watchfiles import watch  # here, not at the top: `compose` without `watch` never needs it

        paths = [str(r.path) for r in self.rules]
        if all(os.path.exists(p) for p in paths):
            try:
                # a batch ends after 50 ms without events, or at the poll interval at the latest
                for _ in watch(*paths, watch_filter=None, debounce=int(self.poll * 1000), step=50,
                               stop_event=stop, raise_interrupt=False):
                    self.step()
                return
            except OSError as e:  # a watch limit reached, a path gone: fall back to polling
                self.emit(f" watch: {e}; polling every {self.poll} s instead")
        while not stop.wait(self.poll):
            self.step()

    def step(self) -> None:
        """One poll: apply what changed since the last one."""
        pending: list[tuple[Rule, list[str], list[str]]] = []
        for i, rule in enumerate(self.rules):
            new = snapshot(rule)
            changed, deleted = changes(self._snaps[i], new)
            self._snaps[i] = new
            if changed or deleted:
                pending.append((rule, changed, deleted))
        rebuild = sorted({r.service for r, _, _ in pending if r.action == "rebuild"})
        if rebuild:
            self._rebuild(rebuild)
        for rule, changed, deleted in pending:
            if rule.service in rebuild or rule.action == "rebuild":
                continue
            for c in self.compose.containers([rule.service], all=False):
                if rule.action.startswith("sync"):
                    self._sync(c, rule, changed, deleted)
                if rule.action in ("sync+restart", "restart"):
                    self.emit(f"Restarting service {rule.service} after changes were detected")
                    self.compose.client.containers.restart(c["Id"])
                if rule.action == "sync+exec" and rule.command:
                    self._exec(c, list(rule.command))

    def _rebuild(self, services: list[str]) -> None:
        from berth.compose.executor import UpOptions

        self.emit(f"Rebuilding service(s) {services} after changes were detected...")
        self.compose.build(services)
        self.compose.up(UpOptions(services=services, no_deps=True))
        self.emit(f"service(s) {services} successfully built and recreated")

    def _sync(self, c: dict[str, Any], rule: Rule, changed: list[str], deleted: list[str]) -> None:
        client = self.compose.client
        if changed:
            client.containers.put_archive(c["Id"], "/", sync_tar(rule, changed))
        if deleted:
            self._exec(c, ["rm", "-rf", "--", *(_container_path(rule, rel) for rel in deleted)])
        self.emit(f"Syncing service {rule.service!r} after {len(changed) + len(deleted)} changes were detected")

    def _exec(self, c: dict[str, Any], command: list[str]) -> None:
        from berth.client.stream import SocketReader, iter_frames

        client = self.compose.client
        eid = client.containers.exec_create(c["Id"], {"Cmd": command, "AttachStdout": True, "AttachStderr": True})["Id"]
        sock, rest = client.execs.start_attached(eid)
        try:
            for _ in iter_frames(SocketReader(sock, rest)):
                pass
        finally:
            sock.close()
