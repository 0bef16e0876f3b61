"""Wake log followers (`logs -f`, attach, build steps) when conmon writes, instead of polling.

One inotify instance per event loop serves every follower (the kernel allows only 128 instances
per user by default); each watched directory (a container's, where conmon writes `ctr.log` and a
rotation renames it) has one watch, shared by its followers. Where inotify is not available the
followers are told so (None) and keep polling.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import struct
import weakref

_IN_MODIFY, _IN_CLOSE_WRITE, _IN_MOVED_TO, _IN_CREATE = 0x2, 0x8, 0x80, 0x100
_IN_NONBLOCK, _IN_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC
_MASK = _IN_MODIFY | _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_CREATE
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len

try:
    _libc: ctypes.CDLL | None = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
except OSError:  # pragma: no cover - glibc is always there on the hosts berth runs on
    _libc = None


class _Watcher:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        assert _libc is not None
        fd = _libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.fd = fd
        weakref.finalize(self, os.close, fd)  # with its loop (a test's, say), the instance goes
        self.by_dir: dict[str, tuple[int, set[asyncio.Event]]] = {}
        self.by_wd: dict[int, str] = {}
        loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        offset = 0
        while offset + _HEADER.size <= len(data):
            wd, _mask, _cookie, length = _HEADER.unpack_from(data, offset)
            offset += _HEADER.size + length
            directory = self.by_wd.get(wd)
            if directory is not None:
                for event in self.by_dir[directory][1]:
                    event.set()

    def subscribe(self, directory: str) -> asyncio.Event | None:
        entry = self.by_dir.get(directory)
        if entry is None:
            assert _libc is not None
            wd = _libc.inotify_add_watch(self.fd, os.fsencode(directory), _MASK)
            if wd < 0:  # gone, or past max_user_watches: the follower polls
                return None
            entry = (wd, set())
            self.by_dir[directory] = entry
            self.by_wd[wd] = directory
        event = asyncio.Event()
        entry[1].add(event)
        return event

    def unsubscribe(self, directory: str, event: asyncio.Event) -> None:
        entry = self.by_dir.get(directory)
        if entry is None:
            return
        entry[1].discard(event)
        if not entry[1]:
            del self.by_dir[directory]
            self.by_wd.pop(entry[0], None)
            assert _libc is not None
            _libc.inotify_rm_watch(self.fd, entry[0])  # fails harmlessly if the directory went


_watchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Watcher] = weakref.WeakKeyDictionary()


def subscribe(directory: str) -> asyncio.Event | None:
    """An event set whenever a file in `directory` is written, created or renamed into it; None if
    inotify cannot watch it (then poll). Call `unsubscribe` with it when done."""
    if _libc is None:
        return None
    loop = asyncio.get_running_loop()
    watcher = _watchers.get(loop)
    if watcher is None:
        try:
            watcher = _Watcher(loop)
        except OSError:
            return None
        _watchers[loop] = watcher
    return watcher.subscribe(directory)


def unsubscribe(directory: str, event: asyncio.Event) -> None:
    watcher = _watchers.get(asyncio.get_running_loop())
    if watcher is not None:
        watcher.unsubscribe(directory, event)
