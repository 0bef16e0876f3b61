"""Rotation of running containers' logs (`--log-opt max-size`, `max-file`): one task each."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from berth.runtime import logrotate

from .model import Container


def settings_of(c: Container) -> logrotate.LogSettings:
    """The container's rotation settings; InvalidParameter (dockerd's start error) if bad."""
    lc = c.host_config.get("LogConfig") or {}
    return logrotate.log_settings(lc.get("Type") or "json-file", dict(lc.get("Config") or {}))


class LogRotation:
    """A ContainerWatcher: rotates a container's log while it runs (see runtime/logrotate.py)."""

    def __init__(self, log_path: Callable[[Container], str]) -> None:
        self._log_path = log_path
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._finishing: set[asyncio.Task[None]] = set()  # held: the loop keeps only weak references

    def started(self, c: Container, resumed: bool = False) -> None:
        self._cancel(c)
        settings = settings_of(c)
        if settings.max_size is None:
            return
        path = self._log_path(c)
        ctl = os.path.join(os.path.dirname(path), "ctl")  # conmon's, in the bundle dir
        self._tasks[c.id] = asyncio.get_running_loop().create_task(logrotate.keep_rotated(path, ctl, settings))

    def stopped(self, c: Container) -> None:
        self._cancel(c)
        if not c.running and settings_of(c).max_size is not None:  # exited, not paused
            task = asyncio.get_running_loop().create_task(self._finish(c))
            self._finishing.add(task)
            task.add_done_callback(self._finishing.discard)

    def _cancel(self, c: Container) -> None:
        task = self._tasks.pop(c.id, None)
        if task is not None:
            task.cancel()

    async def _finish(self, c: Container) -> None:
        """Cut what outgrew max-size once nothing writes (conmon is gone) and nothing follows
        the log: the pieces are new files, which a follower would read again."""
        if c.followers:
            await c.followers_gone.wait()
        if not c.running and c.id not in self._tasks:  # not started again meanwhile
            logrotate.finish_rotation(self._log_path(c), settings_of(c))
