"""Exec sessions: a process spec derived from the container's, run with `<runtime> exec`."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from berth.api.http.server import RawStream
from berth.api.http.streams import STDERR, STDOUT, frame
from berth.common.errors import Conflict, InvalidParameter, NotFound
from berth.common.ids import new_id
from berth.runtime import users

from .containers import ContainerService
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


class ExecService:
    def __init__(self, containers: ContainerService) -> None:
        self.containers = containers
        self._sessions: dict[str, ExecSession] = {}

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
            "DetachKeys": body.get("DetachKeys") or ""})
        self._sessions[s.id] = s
        self.containers._event(c, f"exec_create: {' '.join(cmd)}", execID=s.id)
        return {"Id": s.id}

    def inspect(self, exec_id: str) -> dict[str, Any]:
        s = self._get(exec_id)
        cfg = s.config
        return {
            "ID": s.id, "Running": s.running, "ExitCode": s.exit_code, "ProcessConfig": {
                "tty": cfg["Tty"], "entrypoint": cfg["Cmd"][0], "arguments": cfg["Cmd"][1:],
                "privileged": cfg["Privileged"], "user": cfg["User"]},
            "OpenStdin": cfg["AttachStdin"], "OpenStderr": cfg["AttachStderr"],
            "OpenStdout": cfg["AttachStdout"], "CanRemove": False, "ContainerID": s.container.id,
            "DetachKeys": cfg["DetachKeys"], "Pid": s.pid}

    def resize(self, exec_id: str, height: int, width: int) -> None:
        self._get(exec_id)

    def _process_file(self, s: ExecSession) -> str:
        """Write the exec's OCI process: the container's, with the exec's args, env, user, cwd."""
        c = s.container
        cdir = self.containers.dir(c)
        with open(os.path.join(cdir, "config.json")) as f:
            process = json.load(f)["process"]
        cfg = s.config
        process["args"] = cfg["Cmd"]
        process["terminal"] = False
        env = {e.split("=", 1)[0]: e for e in process.get("env", [])}
        for e in cfg["Env"]:
            env[e.split("=", 1)[0]] = e
        process["env"] = list(env.values())
        if cfg["WorkingDir"]:
            process["cwd"] = cfg["WorkingDir"]
        if cfg["User"]:
            uid, gid, extra = users.resolve_user(self.containers.rootfs(c), cfg["User"])
            process["user"] = {"uid": uid, "gid": gid, **({"additionalGids": extra} if extra else {})}
        if cfg["Privileged"]:
            caps = process.get("capabilities", {})
            from berth.runtime.spec import ALL_CAPS

            for key in ("bounding", "effective", "permitted"):
                caps[key] = sorted(ALL_CAPS)
            process["capabilities"] = caps
        path = os.path.join(cdir, f"exec-{s.id[:16]}.json")
        with open(path, "w") as f:
            json.dump(process, f)
        return path

    async def _spawn(self, s: ExecSession, detach: bool) -> asyncio.subprocess.Process:
        c = s.container
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        if s.running or s.exit_code is not None:
            raise Conflict(f"Error: Exec command {s.id} has already run")
        runtime = self.containers.runtimes[c.runtime]
        proc_file = self._process_file(s)
        argv = runtime.exec_command(c.id, proc_file, detach=detach)
        cfg = s.config
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if cfg["AttachStdin"] and not detach else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if not detach else asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE)
        s.running = True
        s.pid = proc.pid
        self.containers._event(c, f"exec_start: {' '.join(cfg['Cmd'])}", execID=s.id)
        return proc

    async def _finish(self, s: ExecSession, code: int) -> None:
        s.running = False
        s.exit_code = code
        s.done.set()
        try:
            os.unlink(os.path.join(self.containers.dir(s.container), f"exec-{s.id[:16]}.json"))
        except FileNotFoundError:
            pass
        self.containers._event(s.container, "exec_die", execID=s.id, exitCode=str(code))

    async def start_detached(self, exec_id: str) -> None:
        s = self._get(exec_id)
        proc = await self._spawn(s, detach=False)
        # Detached from the client, not from us: we still collect the exit code for inspect.
        if proc.stdout is not None:
            asyncio.get_running_loop().create_task(_drain(proc.stdout))

        async def reap() -> None:
            assert proc.stderr is not None
            await proc.stderr.read()
            await self._finish(s, await proc.wait())

        asyncio.get_running_loop().create_task(reap())

    def start(self, exec_id: str, detach: bool, tty: bool) -> tuple[bool, Callable[[RawStream], Awaitable[None]]]:
        s = self._get(exec_id)
        if s.running or s.exit_code is not None:
            raise Conflict(f"Error: Exec command {s.id} has already run")
        if not s.container.running:
            raise Conflict(f"Container {s.container.id} is not running")
        use_tty = s.config["Tty"]
        cfg = s.config

        async def run(stream: RawStream) -> None:
            try:
                proc = await self._spawn(s, detach=False)
            except Exception as e:  # noqa: BLE001 - reported in-band, the stream is already open
                await stream.write(str(e).encode() if use_tty else frame(STDERR, str(e).encode() + b"\n"))
                await self._finish(s, 126)
                return

            async def pump(reader: asyncio.StreamReader | None, num: int, wanted: bool) -> None:
                if reader is None:
                    return
                while chunk := await reader.read(65536):
                    if wanted:
                        await stream.write(chunk if use_tty else frame(num, chunk))

            async def feed() -> None:
                assert proc.stdin is not None
                try:
                    while data := await stream.read():
                        proc.stdin.write(data)
                        await proc.stdin.drain()
                except (ConnectionError, OSError):
                    pass
                finally:
                    proc.stdin.close()

            feeder = asyncio.get_running_loop().create_task(feed()) if proc.stdin else None
            try:
                await asyncio.gather(pump(proc.stdout, STDOUT, cfg["AttachStdout"]),
                                     pump(proc.stderr, STDERR, cfg["AttachStderr"]))
            finally:
                code = await proc.wait()
                if feeder:
                    feeder.cancel()
                await self._finish(s, code)

        return use_tty, run


async def _drain(reader: asyncio.StreamReader) -> None:
    while await reader.read(65536):
        pass
