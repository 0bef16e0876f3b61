"""The daemon's side of the exec launcher (launcher.py): start it, send it exec requests, and
present each launched process as asyncio's subprocess does (stdin/stdout/stderr streams, wait)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from typing import Any

from .cgroupmove import cgroup_dirs
from .launcher import MAX_MESSAGE, NS_ORDER
from .oci import started_at
from .seccomp_bpf import Unsupported, cached_bpf

log = logging.getLogger(__name__)


class LaunchError(Exception):
    """The process could not be started; `message` is the runtime-style reason."""


def foreign_namespaces(pid: int) -> list[str]:
    """The namespaces of `pid` that are not the daemon's own (host networking shares one, say)."""
    names = []
    for name in (*NS_ORDER, "cgroup", "mnt"):
        if os.stat(f"/proc/{pid}/ns/{name}").st_ino != os.stat(f"/proc/self/ns/{name}").st_ino:
            names.append(name)
    return names


class LaunchedProcess:
    """A process started by the launcher, shaped like asyncio.subprocess.Process where execs use it."""

    def __init__(self, pid: int, exit_future: asyncio.Future[int], stdin: asyncio.StreamWriter | None,
                 stdout: asyncio.StreamReader | None, stderr: asyncio.StreamReader | None) -> None:
        self.pid = pid
        self._exit = exit_future
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.returncode: int | None = None
        self.master = -1  # with a terminal: the pty's master side

    async def wait(self) -> int:
        self.returncode = await asyncio.shield(self._exit)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None and not self._exit.done():
            os.kill(self.pid, sig)


class LauncherClient:
    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._ids = itertools.count(1)
        self._started: dict[str, asyncio.Future[int]] = {}
        self._exits: dict[str, asyncio.Future[int]] = {}

    def start(self) -> None:
        if self._proc is not None:  # a launcher that died: reap it
            try:
                self._proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._proc = subprocess.Popen([sys.executable, "-m", "berth.runtime.launcher", str(theirs.fileno())],
                                      pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                                      start_new_session=True)
        theirs.close()
        ours.setblocking(False)
        self._sock = ours
        asyncio.get_running_loop().add_reader(ours.fileno(), self._on_message)

    @property
    def alive(self) -> bool:
        return self._sock is not None

    def stop(self) -> None:
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._proc = None

    def _on_message(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(MAX_MESSAGE)
            except BlockingIOError:
                return
            if not data:
                self._lost()
                return
            msg = json.loads(data)
            rid = msg["id"]
            started = self._started.pop(rid, None)
            if "pid" in msg and started and not started.done():
                started.set_result(int(msg["pid"]))
            elif "error" in msg and started and not started.done():
                started.set_exception(LaunchError(msg["error"]))
                self._exits.pop(rid, None)
            elif "exit" in msg:
                fut = self._exits.pop(rid, None)
                if fut and not fut.done():
                    fut.set_result(int(msg["exit"]))

    def _lost(self) -> None:
        log.warning("the exec launcher is gone; execs fall back to the OCI runtime")
        loop = asyncio.get_running_loop()
        assert self._sock is not None
        loop.remove_reader(self._sock.fileno())
        self._sock.close()
        self._sock = None
        for fut in [*self._started.values(), *self._exits.values()]:
            if not fut.done():
                fut.set_exception(LaunchError("the exec launcher died"))
        self._started.clear()
        self._exits.clear()

    async def _send(self, data: bytes, fds: list[int]) -> None:
        while True:
            if self._sock is None:
                raise LaunchError("the exec launcher died")
            try:
                socket.send_fds(self._sock, [data], fds)
                return
            except BlockingIOError:
                await asyncio.sleep(0.001)

    async def launch(self, config: dict[str, Any], init_pid: int, process: dict[str, Any], *,
                     stdin: bool) -> LaunchedProcess:
        """Start `process` (an OCI process object) in the container whose init is `init_pid` and
        whose OCI config is `config`. Raises Unsupported when the OCI runtime must do it instead,
        LaunchError when the process could not start. With `process["terminal"]` the process
        gets a pty of the container's own, whose master is the result's `master` (no pipes)."""
        if self._sock is None:
            raise Unsupported("no launcher")
        linux = config.get("linux") or {}
        if any(ns.get("type") == "user" for ns in linux.get("namespaces") or []):
            raise Unsupported("user namespaces")
        if process.get("apparmorProfile") or process.get("selinuxLabel"):
            raise Unsupported("LSM label")
        loop = asyncio.get_running_loop()
        seccomp = linux.get("seccomp")
        program = await loop.run_in_executor(None, cached_bpf, seccomp) if seccomp else None
        req = {"init_pid": init_pid, "init_start": started_at(init_pid),
               "namespaces": foreign_namespaces(init_pid), "cgroups": cgroup_dirs(init_pid),
               "process": process, "seccomp": base64.b64encode(program).decode() if program else None}
        rid = str(next(self._ids))
        req["id"] = rid
        terminal = bool(process.get("terminal"))
        ours: list[int] = []  # our ends, to close if the launch fails
        theirs: list[int] = []
        console: socket.socket | None = None
        try:
            if terminal:
                console, their_console = socket.socketpair()
                null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                theirs = [null, null, null, their_console.detach()]
            else:
                in_r, in_w = os.pipe2(os.O_CLOEXEC) if stdin else (os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), -1)
                out_r, out_w = os.pipe2(os.O_CLOEXEC)
                err_r, err_w = os.pipe2(os.O_CLOEXEC)
                ours, theirs = [in_w, out_r, err_r], [in_r, out_w, err_w]
            started: asyncio.Future[int] = loop.create_future()
            exited: asyncio.Future[int] = loop.create_future()
            self._started[rid] = started
            self._exits[rid] = exited
            try:
                await self._send(json.dumps(req).encode(), theirs)
            finally:
                for fd in set(theirs):
                    os.close(fd)
            try:
                pid = await started
            except BaseException:
                self._exits.pop(rid, None)
                raise
            if console is not None:
                console.setblocking(False)  # sent before the exec that the pid follows: it is there
                try:
                    _msg, got, _flags, _addr = socket.recv_fds(console, 1, 1)
                except BlockingIOError:
                    got = []
                if not got:
                    os.kill(pid, signal.SIGKILL)
                    raise LaunchError("the container's terminal did not come back")
                proc = LaunchedProcess(pid, exited, None, None, None)
                proc.master = got[0]
                return proc
        except BaseException:
            for fd in ours:
                if fd >= 0:
                    os.close(fd)
            raise
        finally:
            if console is not None:
                console.close()
        writer = await _writer(ours[0]) if stdin else None
        return LaunchedProcess(pid, exited, writer, await _reader(ours[1]), await _reader(ours[2]))


async def _reader(fd: int) -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", 0))
    return reader


async def _writer(fd: int) -> asyncio.StreamWriter:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, os.fdopen(fd, "wb", 0))
    return asyncio.StreamWriter(transport, protocol, None, loop)

