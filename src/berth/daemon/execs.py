"""Exec sessions: a process spec derived from the container's, started by berth's exec launcher
(runtime/launcher.py, a fork that joins the container) or, where it does not apply (a tty, user
namespaces, custom seccomp profiles), with `<runtime> exec`."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import signal
import struct
import termios
import tty
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from berth.api.http.server import RawStream
from berth.api.http.streams import STDERR, STDOUT, frame
from berth.common.errors import BerthError, Conflict, InvalidParameter, NotFound
from berth.common.ids import new_id
from berth.runtime import users
from berth.runtime.launcher_client import LauncherClient, LaunchError
from berth.runtime.oci import OCIRuntime
from berth.runtime.seccomp_bpf import Unsupported

from .containers import ContainerService
from .detach import EscapeProxy, parse_keys
from .model import Container


@dataclass
class ExecSession:
    id: str
    container: Container
    config: dict[str, Any]
    running: bool = False
    exit_code: int | None = None
    pid: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    proc: Any = None  # asyncio.subprocess.Process, or the launcher's look-alike
    master: int = -1  # the pty's master side while a Tty exec runs
    size: tuple[int, int] | None = None  # the terminal's (height, width) as last asked
    launched: bool = False  # by the launcher: it already said whether the process started
    failure: str | None = None  # why the launcher could not start it


class ExecService:
    def __init__(self, containers: ContainerService, launcher: bool = True) -> None:
        self.containers = containers
        self._sessions: dict[str, ExecSession] = {}
        self.launcher: LauncherClient | None = None
        if launcher:
            self.launcher = LauncherClient()
            self.launcher.start()

    def _get(self, exec_id: str) -> ExecSession:
        s = self._sessions.get(exec_id)
        if s is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        return s

    def create(self, ref: str, body: Any) -> dict[str, Any]:
        c = self.containers.get(ref)
        if not isinstance(body, dict):
            raise InvalidParameter("exec config must be a JSON object")
        cmd = body.get("Cmd")
        if isinstance(cmd, str):
            cmd = [cmd]
        if not cmd:
            raise InvalidParameter("No exec command specified")
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        if c.state.get("Paused"):
            raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
        s = ExecSession(new_id(), c, {
            "AttachStdin": bool(body.get("AttachStdin")), "AttachStdout": bool(body.get("AttachStdout")),
            "AttachStderr": bool(body.get("AttachStderr")), "Tty": bool(body.get("Tty")),
            "Env": list(body.get("Env") or []), "Cmd": list(cmd), "User": body.get("User") or "",
            "WorkingDir": body.get("WorkingDir") or "", "Privileged": bool(body.get("Privileged")),
            # dockerd decodes JSON keys case-insensitively; docker-py sends `detachKeys`
            "DetachKeys": body.get("DetachKeys") or body.get("detachKeys") or ""})
        size = body.get("ConsoleSize")  # [height, width] (API 1.42): the terminal's size from the start
        if isinstance(size, list) and len(size) == 2 and all(isinstance(n, int) and n > 0 for n in size):
            s.size = (size[0], size[1])
        self._sessions[s.id] = s
        self.containers._event(c, f"exec_create: {' '.join(cmd)}", execID=s.id)
        return {"Id": s.id}

    def inspect(self, exec_id: str) -> dict[str, Any]:
        s = self._get(exec_id)
        cfg = s.config
        return {
            "ID": s.id, "Running": s.running, "ExitCode": s.exit_code, "ProcessConfig": {
                "tty": cfg["Tty"], "entrypoint": cfg["Cmd"][0], "arguments": cfg["Cmd"][1:],
                "privileged": cfg["Privileged"], **({"user": cfg["User"]} if cfg["User"] else {})},
            "OpenStdin": cfg["AttachStdin"], "OpenStderr": cfg["AttachStderr"],
            "OpenStdout": cfg["AttachStdout"], "CanRemove": False, "ContainerID": s.container.id,
            "DetachKeys": cfg["DetachKeys"], "Pid": s.pid}

    def resize(self, exec_id: str, height: int, width: int) -> None:
        s = self._get(exec_id)
        s.size = (height, width)  # kept for a terminal that is still being made (the CLI asks once)
        if s.master < 0 or s.proc is None:
            return
        fcntl.ioctl(s.master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
        # The runtime copies the size of its terminal (ours) to the container's on SIGWINCH.
        try:
            s.proc.send_signal(signal.SIGWINCH)
        except ProcessLookupError:
            pass

    def _process(self, s: ExecSession) -> tuple[dict[str, Any], dict[str, Any]]:
        """The exec's OCI process (the container's, with the exec's args, env, user, cwd), and
        the container's OCI config."""
        c = s.container
        cdir = self.containers.dir(c)
        with open(os.path.join(cdir, "config.json")) as f:
            config = json.load(f)
        process = config["process"]
        cfg = s.config
        process["args"] = cfg["Cmd"]
        process["terminal"] = cfg["Tty"]
        env = {e.split("=", 1)[0]: e for e in process.get("env", [])}
        for e in cfg["Env"]:
            env[e.split("=", 1)[0]] = e
        process["env"] = list(env.values())
        if cfg["WorkingDir"]:
            process["cwd"] = cfg["WorkingDir"]
        if cfg["User"]:
            uid, gid, extra = users.resolve_user(self.containers.rootfs(c), cfg["User"])
            # as the container's own process (spec.py) and dockerd's exec: the primary group is a
            # supplementary one too
            process["user"] = {"uid": uid, "gid": gid, "additionalGids": [gid, *(g for g in extra if g != gid)]}
        if cfg["Privileged"]:
            caps = process.get("capabilities", {})
            from berth.runtime.capabilities import ALL_CAPS, host_capabilities

            held = host_capabilities()  # what this host lets us give (a sandbox may hold back some)
            for key in ("bounding", "effective", "permitted"):
                caps[key] = sorted(c for c in ALL_CAPS if c in held)
            process["capabilities"] = caps
        return process, config

    def _process_file(self, s: ExecSession, process: dict[str, Any]) -> str:
        path = self._file(s, "json")
        with open(path, "w") as f:
            json.dump(process, f)
        return path

    def _custom_seccomp(self, c: Container) -> bool:
        return any(str(o).replace(":", "=", 1).startswith("seccomp=") and not str(o).endswith("unconfined")
                   for o in c.host_config.get("SecurityOpt") or [])

    async def _launch(self, s: ExecSession, process: dict[str, Any], config: dict[str, Any],
                      stdin: bool) -> Any:
        """Start the process with the launcher; None when the OCI runtime must do it."""
        c = s.container
        pid = int(c.state.get("Pid") or 0)
        if self.launcher is None or not pid or self._custom_seccomp(c):
            return None
        if not self.launcher.alive:
            self.launcher.start()  # it died (killed by hand?): a new one serves this exec
        proc: Any
        try:
            proc = await self.launcher.launch(config, pid, process, stdin=stdin)
        except Unsupported:
            return None
        except LaunchError as e:
            s.failure = str(e)
            proc = _Failed()
        s.launched = True
        return proc

    def _file(self, s: ExecSession, suffix: str) -> str:
        return os.path.join(self.containers.dir(s.container), f"exec-{s.id[:16]}.{suffix}")

    async def _spawn(self, s: ExecSession, stdin: Any, stdout: Any, terminal: bool = False) -> Any:
        """Start the process: by the launcher (pipes; or with `terminal` a pty of the container's
        whose master is the result's `master`), else `<runtime> exec` with `stdin`/`stdout` and
        its stderr a pipe (the process's stderr, or with a tty only the runtime's own messages).
        None when `terminal` and only the runtime could do it: the caller brings a pty."""
        c = s.container
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        if s.running or s.exit_code is not None:
            raise Conflict(f"Error: Exec command {s.id} has already run")
        process, config = self._process(s)
        proc = None
        if stdout == asyncio.subprocess.PIPE or terminal:
            proc = await self._launch(s, process, config, stdin == asyncio.subprocess.PIPE)
        if proc is None and terminal:
            return None
        if proc is None:
            runtime = self.containers.runtimes[c.runtime]
            argv = runtime.exec_command(c.id, self._process_file(s, process), pid_file=self._file(s, "pid"),
                                        log_file=self._file(s, "log"))
            proc = await asyncio.create_subprocess_exec(*argv, stdin=stdin, stdout=stdout,
                                                        stderr=asyncio.subprocess.PIPE, start_new_session=True)
        s.running = True
        s.pid = proc.pid
        self.containers._event(c, f"exec_start: {' '.join(s.config['Cmd'])}", execID=s.id)
        return proc

    def _started(self, s: ExecSession) -> bool:
        if s.launched:
            return s.failure is None
        return os.path.exists(self._file(s, "pid"))

    async def _finish(self, s: ExecSession, code: int) -> str | None:
        """Record the exit; returns docker's message when the runtime could not start the process
        (the exit code is then 126, as dockerd's)."""
        failure = None
        if s.launched:
            failure = s.failure
            if failure is not None:
                code = 126
        elif not self._started(s):
            failure = OCIRuntime.exec_failure(self._file(s, "log"))
            if failure is not None or code == 255:
                code = 126
        s.running = False
        s.exit_code = code
        s.failure = failure
        s.master = -1
        s.done.set()
        for suffix in ("json", "pid", "log"):
            try:
                os.unlink(self._file(s, suffix))
            except FileNotFoundError:
                pass
        self.containers._event(s.container, "exec_die", execID=s.id, exitCode=str(code))
        return None if failure is None else f"OCI runtime exec failed: {failure}: unknown\r\n"

    async def start_detached(self, exec_id: str) -> None:
        s = self._get(exec_id)
        # Detached from the client, not from us: we still collect the exit code for inspect.
        session = await self._session(s, None)
        asyncio.get_running_loop().create_task(session)

    async def run_to_end(self, c: Container, cmd: list[str], timeout: float,
                         limit: int) -> tuple[int, bytes, bool, str | None]:
        """Run `cmd` in `c` with no client (a health probe), as the container's user and in its
        working directory: its exit code, the first `limit` bytes of its output (stdout and stderr
        as they come), whether there was more, and why it could not be started if it could not.
        On timeout the process is killed, and TimeoutError raised once it is gone. The session
        is forgotten afterwards."""
        s = self._get(self.create(c.id, {"Cmd": cmd, "AttachStdout": True, "AttachStderr": True})["Id"])
        sink = _Collected(limit)
        try:
            task = asyncio.ensure_future(await self._session(s, sink))
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except TimeoutError:
                self._kill(s)
                await task
                raise
        finally:
            self._sessions.pop(s.id, None)
        return int(s.exit_code if s.exit_code is not None else -1), bytes(sink.data), sink.truncated, s.failure

    def _kill(self, s: ExecSession) -> None:
        """SIGKILL the exec's process (the runtime's pid file names it; else its stand-in)."""
        try:
            with open(self._file(s, "pid")) as f:
                os.kill(int(f.read().strip()), signal.SIGKILL)
                return
        except (OSError, ValueError):
            pass
        if s.proc is not None:
            try:
                s.proc.send_signal(signal.SIGKILL)
            except ProcessLookupError:
                pass

    def start(self, exec_id: str, detach: bool, tty: bool) -> tuple[bool, Callable[[RawStream], Awaitable[None]]]:
        """`tty` is the start request's: it decides the framing (dockerd multiplexes unless the
        start asks for a raw stream), while the exec's own Tty decides whether it gets a pty."""
        s = self._get(exec_id)
        if s.running or s.exit_code is not None:
            raise Conflict(f"Error: Exec command {s.id} has already run")
        if not s.container.running:
            raise Conflict(f"Container {s.container.id} is not running")
        keys = parse_keys(s.config["DetachKeys"])

        async def run(stream: RawStream) -> None:
            out = _Output(stream, framed=not tty)
            try:
                session = await self._session(s, out)
            except BerthError as e:
                await out.write(STDOUT, e.message.encode() + b"\r\n")
                return
            detached = asyncio.Event()
            loop = asyncio.get_running_loop()
            task = loop.create_task(session)
            feeder = loop.create_task(self._feed(s, stream, keys, detached)) if s.config["AttachStdin"] else None
            waiter = loop.create_task(detached.wait())
            try:
                await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                if feeder:
                    feeder.cancel()
                if detached.is_set():
                    out.detach()  # the process runs on; its output is drained and dropped

        return tty, run

    async def _session(self, s: ExecSession, out: _Output | None) -> Coroutine[Any, Any, None]:
        """Spawn the process now; the returned coroutine pumps its output until it exits."""
        if s.config["Tty"]:
            proc = await self._spawn(s, None, None, terminal=True)
            if proc is not None:
                master = getattr(proc, "master", -1)
                if master < 0:  # it could not start: a pty with no one on the other side ends at once
                    master, slave = os.openpty()
                    os.close(slave)
            else:
                master, slave = os.openpty()
                tty.setraw(slave)  # the runtime copies bytes through; the container's pty does the rest
                if s.size is not None:  # the runtime gives the container's pty this one's size
                    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", *s.size, 0, 0))
                try:
                    proc = await self._spawn(s, slave, slave)
                except BaseException:
                    os.close(master)
                    raise
                finally:
                    os.close(slave)
            os.set_blocking(master, False)
            if s.size is not None:
                fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", *s.size, 0, 0))
            s.master = master
            s.proc = proc
            return self._pump_tty(s, proc, master, out)
        stdin = asyncio.subprocess.PIPE if s.config["AttachStdin"] and out else asyncio.subprocess.DEVNULL
        proc = await self._spawn(s, stdin, asyncio.subprocess.PIPE)
        s.proc = proc
        return self._pump_pipes(s, proc, out)

    async def _pump_tty(self, s: ExecSession, proc: Any, master: int,
                        out: _Output | None) -> None:
        loop = asyncio.get_running_loop()
        # the runtime's own messages (none from the launcher): read so it never blocks on them
        runtime_err = loop.create_task(proc.stderr.read()) if proc.stderr is not None else None
        try:
            while chunk := await _read_fd(master):
                if out and s.config["AttachStdout"]:
                    await out.write(STDOUT, chunk)
        finally:
            code = await proc.wait()
            if runtime_err is not None:
                runtime_err.cancel()
            os.close(master)
            failure = await self._finish(s, code)
        if failure and out:
            await out.write(STDOUT, failure.encode())

    async def _pump_pipes(self, s: ExecSession, proc: Any, out: _Output | None) -> None:
        held = bytearray()  # stderr before the process ran: the runtime's error, if it failed

        async def pump(reader: asyncio.StreamReader | None, num: int, wanted: bool) -> None:
            if reader is None:
                return
            while chunk := await reader.read(65536):
                if not (out and wanted):
                    continue
                if num == STDERR and not self._started(s):
                    held.extend(chunk)
                    continue
                if held:
                    await out.write(STDERR, bytes(held))
                    held.clear()
                await out.write(num, chunk)

        try:
            await asyncio.gather(pump(proc.stdout, STDOUT, s.config["AttachStdout"]),
                                 pump(proc.stderr, STDERR, s.config["AttachStderr"]))
        finally:
            code = await proc.wait()
            failure = await self._finish(s, code)
        if out:
            if failure:
                await out.write(STDOUT, failure.encode())
            elif held:
                await out.write(STDERR, bytes(held))

    async def _feed(self, s: ExecSession, stream: RawStream, keys: bytes, detached: asyncio.Event) -> None:
        """Client bytes -> the process's stdin, until EOF or the detach keys."""
        proxy = EscapeProxy(keys)
        proc = s.proc
        assert proc is not None
        try:
            while data := await stream.read():
                data, detach = proxy.feed(data)
                if data:
                    if s.master >= 0:
                        await _write_fd(s.master, data)
                    elif proc.stdin is not None:
                        proc.stdin.write(data)
                        await proc.stdin.drain()
                if detach:
                    detached.set()
                    return
        except (ConnectionError, OSError):
            pass
        if proc.stdin is not None:
            proc.stdin.close()


class _Output:
    """The client's side of an exec: framed or raw, and silent once the client detached."""

    def __init__(self, stream: RawStream, framed: bool) -> None:
        self.stream = stream
        self.framed = framed
        self.attached = True

    async def write(self, num: int, data: bytes) -> None:
        if not self.attached:
            return
        try:
            await self.stream.write(frame(num, data) if self.framed else data)
        except (ConnectionError, OSError):
            self.attached = False

    def detach(self) -> None:
        self.attached = False


class _Collected(_Output):
    """A client-less exec's output, kept up to `limit` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.truncated = False
        self.attached = True

    async def write(self, num: int, data: bytes) -> None:
        room = self.limit - len(self.data)
        self.data += data[:max(room, 0)]
        self.truncated = self.truncated or len(data) > room


class _Failed:
    """What a launch that failed leaves: no output, the exit code of a failed exec."""

    pid = 0
    stdin = None
    returncode = 126

    def __init__(self) -> None:
        self.stdout = asyncio.StreamReader()
        self.stdout.feed_eof()
        self.stderr = asyncio.StreamReader()
        self.stderr.feed_eof()

    async def wait(self) -> int:
        return 126

    def send_signal(self, sig: int) -> None:
        pass


async def _read_fd(fd: int) -> bytes:
    """Read a non-blocking fd (a pty master) in the loop; b"" at EOF or EIO (no writer left)."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            return os.read(fd, 65536)
        except BlockingIOError:
            pass
        except OSError:
            return b""
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(fd, _wake, ready)
        try:
            await ready
        finally:
            loop.remove_reader(fd)


async def _write_fd(fd: int, data: bytes) -> None:
    loop = asyncio.get_running_loop()
    while data:
        try:
            n = os.write(fd, data)
            data = data[n:]
            continue
        except BlockingIOError:
            pass
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_writer(fd, _wake, ready)
        try:
            await ready
        finally:
            loop.remove_writer(fd)


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)
