"""Drive an OCI runtime (runc, crun) through conmon, the per-container monitor.

conmon owns the container's stdio and log file and outlives berthd, so a daemon crash or
restart neither stops containers nor loses their output. berthd learns of an exit by watching
conmon's pidfd and reading the exit file conmon writes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal as signals
import time
from dataclasses import dataclass

from berth.common.errors import BerthError, Conflict, NotFound

from .cgroupmove import LockWarmer

CONMON = "/usr/bin/conmon"


class StartError(BerthError):
    """The runtime could not start the process; `exit_code` is docker's 126/127/128 class."""

    status = 400

    def __init__(self, message: str, exit_code: int = 128):
        super().__init__(message)
        self.exit_code = exit_code


def classify_start_error(message: str) -> StartError:
    lower = message.lower()
    if "executable file not found" in lower or "no such file or directory" in lower:
        return StartError(message, 127)
    if "permission denied" in lower:
        return StartError(message, 126)
    return StartError(message, 128)


@dataclass
class Created:
    pid: int
    conmon_pid: int


@dataclass(frozen=True)
class RuntimeInfo:
    name: str
    path: str


def _clean_runtime_message(raw: str) -> str:
    """runc prints logrus lines (`time=... level=error msg="..."`); keep the message."""
    msgs = []
    for line in raw.strip().splitlines():
        if 'msg="' in line:
            body = line.split('msg="', 1)[1]
            body = body.rsplit('"', 1)[0]
            msgs.append(body.encode().decode("unicode_escape", errors="replace"))
        elif line.strip():
            msgs.append(line.strip())
    return "; ".join(msgs) or raw.strip()


class OCIRuntime:
    """Lifecycle per container: create (conmon + runtime create) -> start -> [kill] -> exit
    (exit file written by conmon) -> delete. `delete` must follow every create."""

    def __init__(self, info: RuntimeInfo, state_root: str, exit_dir: str) -> None:
        self.info = info
        self.state_root = state_root
        self.exit_dir = exit_dir
        os.makedirs(state_root, exist_ok=True)
        os.makedirs(exit_dir, exist_ok=True)
        self._init_pids: dict[str, int] = {}  # created, not yet started: cid -> runtime init's pid

    def _base(self) -> list[str]:
        return [self.info.path, "--root", self.state_root]

    async def _run(self, *args: str, stdin: bytes | None = None) -> tuple[int, bytes, bytes]:
        proc = await asyncio.create_subprocess_exec(
            *self._base(), *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate(stdin)
        assert proc.returncode is not None
        return proc.returncode, out, err

    def has_state(self, cid: str) -> bool:
        """Whether the runtime still holds state for `cid` (created and not yet deleted)."""
        return os.path.isdir(os.path.join(self.state_root, cid))

    def exit_file(self, cid: str) -> str:
        return os.path.join(self.exit_dir, cid)

    async def create(self, cid: str, bundle: str, log_path: str, *, tty: bool = False,
                     stdin: bool = False, stdin_once: bool = False,
                     log_size_max: int | None = None) -> Created:
        """Start conmon, which runs `<runtime> create`; returns once the container exists."""
        try:
            os.unlink(self.exit_file(cid))
        except FileNotFoundError:
            pass
        for stale in ("attach", "ctl", "winsz"):
            try:
                os.unlink(os.path.join(bundle, stale))
            except FileNotFoundError:
                pass
        args = [CONMON, "--api-version", "1", "-c", cid, "-u", cid, "-n", cid,
                "-r", self.info.path, "-b", bundle,
                "-p", os.path.join(bundle, "pid"), "-P", os.path.join(bundle, "conmon.pid"),
                "--exit-dir", self.exit_dir, "--persist-dir", bundle,
                "-l", f"k8s-file:{log_path}", "--full-attach", "--socket-dir-path", bundle,
                "--runtime-arg", f"--root={self.state_root}", "--log-level", "error",
                # docker does not fsync container logs either; an fsync per exit is ms on ext4
                "--no-sync-log"]
        if log_size_max:
            args += ["--log-size-max", str(log_size_max)]
        if tty:
            args.append("-t")
        elif stdin:
            # StdinOnce (docker run -i): stdin closes when the attached client goes away.
            args += ["-i"] if stdin_once else ["-i", "--leave-stdin-open"]
        with LockWarmer():  # runc moves the init into its cgroups: see cgroupmove
            sync_r, sync_w = os.pipe()
            start_r, start_w = os.pipe()
            devnull = os.open(os.devnull, os.O_RDWR)
            env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                   "_OCI_SYNCPIPE": "3", "_OCI_STARTPIPE": "4"}
            try:
                # posix_spawn: no Python runs in the child, so it is cheap and fork-safe in a threaded daemon.
                pid = os.posix_spawn(CONMON, args, env, file_actions=[
                    (os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1),
                    (os.POSIX_SPAWN_DUP2, devnull, 2), (os.POSIX_SPAWN_DUP2, sync_w, 3),
                    (os.POSIX_SPAWN_DUP2, start_r, 4)], setsid=True)
            finally:
                os.close(sync_w)
                os.close(start_r)
                os.close(devnull)
            os.write(start_w, b"0")
            os.close(start_w)
            loop = asyncio.get_running_loop()
            try:
                data = await loop.run_in_executor(None, _read_line, sync_r)
            finally:
                os.close(sync_r)
            await loop.run_in_executor(None, os.waitpid, pid, 0)  # conmon's parent exits at once
        result: dict[str, object] = {}
        for line in data.decode(errors="replace").splitlines():
            if line.strip():
                result = json.loads(line)
                break
        child = result.get("data")
        if not isinstance(child, int) or child <= 0:
            raise classify_start_error(_clean_runtime_message(str(result.get("message") or
                                                                  "conmon failed to create the container")))
        with open(os.path.join(bundle, "conmon.pid")) as f:
            conmon_pid = int(f.read().strip())
        self._init_pids[cid] = child
        return Created(child, conmon_pid)

    async def start(self, cid: str) -> None:
        init_pid = self._init_pids.pop(cid, 0)
        if self.info.name == "runc" and await self._start_by_fifo(cid, init_pid):
            return
        rc, _out, err = await self._run("start", cid)
        if rc != 0:
            raise classify_start_error(_clean_runtime_message(err.decode(errors="replace")))

    async def _start_by_fifo(self, cid: str, init_pid: int = 0) -> bool:
        """Do what `runc start` does without spawning it (a Go binary: ~5 ms, a tenth of a whole
        `docker run`): after `runc create`, runc's init waits to open `exec.fifo` for writing; the
        reader gets "0", removes the fifo and the user process is exec'd. False (and nothing
        touched) when the fifo is not there, so the caller falls back to `runc start`.

        runc's init closes the fifo before its execve, so the fifo's EOF comes up to a few ms
        (a scheduling slice on a busy host) before the user's program runs. Returning then would
        let a `kill`, `top` or `exec` right after `start` meet runc's init rather than the
        program (under dockerd, containerd's round trips hide that window): with `init_pid`,
        this returns only once that process has exec'd (its /proc/PID/exe changed) or died."""
        fifo = os.path.join(self.state_root, cid, "exec.fifo")
        try:
            st = os.stat(fifo)
        except FileNotFoundError:
            return False
        import stat

        if not stat.S_ISFIFO(st.st_mode):
            return False

        def read_fifo() -> bytes:
            init_exe = _exe_identity(init_pid) if init_pid else None
            fd = os.open(fifo, os.O_RDONLY | os.O_CLOEXEC)  # blocks until init opens its end
            try:
                data = _read_all(fd)
            finally:
                os.close(fd)
            if init_exe is not None and data == b"0":
                _wait_for_exec(init_pid, init_exe)
            return data

        data = await asyncio.get_running_loop().run_in_executor(None, read_fifo)
        try:
            os.unlink(fifo)
        except FileNotFoundError:
            pass
        if data != b"0":
            raise StartError("the container's init exited before it could be started", 128)
        return True

    async def kill(self, cid: str, sig: int = signals.SIGTERM, all_processes: bool = False) -> None:
        args = ["kill"] + (["--all"] if all_processes else []) + [cid, str(sig)]
        rc, _out, err = await self._run(*args)
        if rc != 0:
            msg = _clean_runtime_message(err.decode(errors="replace"))
            if "not running" in msg or "does not exist" in msg or "process already finished" in msg:
                raise Conflict(f"container {cid} is not running")
            raise BerthError(f"cannot kill container {cid}: {msg}")

    async def delete(self, cid: str, force: bool = True) -> None:
        self._init_pids.pop(cid, None)  # created but never started
        if self._delete_exited(cid):
            return
        rc, _out, err = await self._run("delete", *(["--force"] if force else []), cid)
        if rc != 0:
            msg = err.decode(errors="replace")
            if "does not exist" not in msg:
                raise BerthError(f"cannot delete container {cid} from the runtime: "
                                 f"{_clean_runtime_message(msg)}")

    def _delete_exited(self, cid: str) -> bool:
        """What `runc delete` does for a container whose init is gone (remove its cgroups, then
        its state dir), done here: spawning runc costs ~15 ms on the path of every `run --rm`.
        False, touching nothing, wherever runc must decide: another runtime, a live or unknown
        init, a shared PID namespace (processes may be left to kill), hooks, busy cgroups."""
        if self.info.name != "runc":
            return False
        state_dir = os.path.join(self.state_root, cid)
        try:
            with open(os.path.join(state_dir, "state.json")) as f:
                state = json.load(f)
            config = state["config"]
            if any(config.get("Hooks") and v for v in (config.get("Hooks") or {}).values()):
                return False
            if not any(ns.get("type") == "NEWPID" and not ns.get("path") for ns in config.get("namespaces") or []):
                return False
            if started_at(int(state["init_process_pid"])) == str(state["init_process_start"]):
                return False  # still running
            paths = sorted(set((state.get("cgroup_paths") or {}).values()))
        except (OSError, ValueError, KeyError, TypeError):
            return False
        for path in paths:
            try:
                os.rmdir(path)
            except FileNotFoundError:
                pass
            except OSError:
                return False  # not empty (processes or child cgroups left): runc's job
        import shutil

        shutil.rmtree(state_dir, ignore_errors=True)
        return True

    async def pause(self, cid: str) -> None:
        rc, _o, err = await self._run("pause", cid)
        if rc != 0:
            raise Conflict(_clean_runtime_message(err.decode(errors="replace")))

    async def resume(self, cid: str) -> None:
        rc, _o, err = await self._run("resume", cid)
        if rc != 0:
            raise Conflict(_clean_runtime_message(err.decode(errors="replace")))

    async def update(self, cid: str, resources: dict[str, object]) -> None:
        """Change a running container's cgroup limits (OCI LinuxResources JSON)."""
        rc, _o, err = await self._run("update", "--resources", "-", cid, stdin=json.dumps(resources).encode())
        if rc != 0:
            raise BerthError(f"Cannot update container {cid}: "
                             f"{_clean_runtime_message(err.decode(errors='replace'))}")

    async def state(self, cid: str) -> dict[str, object] | None:
        rc, out, _err = await self._run("state", cid)
        if rc != 0:
            return None
        return json.loads(out)

    async def processes(self, cid: str) -> list[int]:
        rc, out, err = await self._run("ps", "--format", "json", cid)
        if rc != 0:
            raise NotFound(_clean_runtime_message(err.decode(errors="replace")))
        return list(json.loads(out) or [])

    def exec_command(self, cid: str, process_json_path: str, *, detach: bool = False,
                     tty: bool = False, pid_file: str | None = None,
                     log_file: str | None = None) -> list[str]:
        """argv for `<runtime> exec` of a process spec; the caller owns its stdio. The runtime
        writes `pid_file` once the process runs, and its own errors to `log_file` (JSON lines),
        where `exec_failure` finds them. With a terminal in the spec and no console socket, the
        runtime makes the container's pty and copies it to its stdin/stdout, which must be a tty."""
        args = self._base()
        if log_file:
            args += ["--log", log_file, "--log-format", "json"]
        args += ["exec", "--process", process_json_path]
        if pid_file:
            args += ["--pid-file", pid_file]
        if detach:
            args.append("--detach")
        if tty:
            args.append("--tty")
        return [*args, cid]

    @staticmethod
    def exec_failure(log_file: str) -> str | None:
        """The runtime's error from an exec's log: why the process could not be started."""
        try:
            with open(log_file) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return None
        for line in reversed(lines):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("level") in ("error", "fatal") and entry.get("msg"):
                return str(entry["msg"])
        return None

    def read_exit_code(self, cid: str) -> int | None:
        try:
            with open(self.exit_file(cid)) as f:
                text = f.read().strip()
        except FileNotFoundError:
            return None
        try:
            return int(text)
        except ValueError:
            return None


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _exe_identity(pid: int) -> tuple[int, int] | None:
    try:
        st = os.stat(f"/proc/{pid}/exe")
    except OSError:  # gone already, or a zombie
        return None
    return st.st_dev, st.st_ino


EXEC_WAIT_LIMIT = 2.0  # seconds: past this, start returns anyway (a hook that hangs, a stopped init)
EXEC_POLL = 0.0002


def _wait_for_exec(pid: int, init_exe: tuple[int, int]) -> None:
    """Until `pid` runs another executable than `init_exe`, or is gone. Polled: no kernel
    notification for an exec exists short of the netlink process connector, and the wait is
    short (about 1 ms at the median, bench/exec_wait_bench.py)."""
    deadline = time.monotonic() + EXEC_WAIT_LIMIT
    while _exe_identity(pid) == init_exe and time.monotonic() < deadline:
        time.sleep(EXEC_POLL)


def _read_line(fd: int) -> bytes:
    """conmon's first sync message; the pipe stays open for the container's life, so no EOF."""
    buf = b""
    while b"\n" not in buf:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buf += chunk
    return buf


def started_at(pid: int) -> str | None:
    """A process's start time in clock ticks (field 22 of its stat), None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ExitWatcher:
    """Calls back once when a process (not necessarily our child) exits, via its pidfd."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._fds: dict[int, int] = {}

    def watch(self, pid: int, callback: object) -> bool:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return False
        self._fds[pid] = fd

        def ready() -> None:
            self._loop.remove_reader(fd)
            os.close(fd)
            self._fds.pop(pid, None)
            try:  # reap it if it happens to be our child
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            callback()  # type: ignore[operator]

        self._loop.add_reader(fd, ready)
        return True


def hybrid_cgroups() -> bool:
    """cgroup v1 controllers plus a cgroup2 mount at /sys/fs/cgroup/unified (systemd's hybrid)."""
    return os.path.ismount("/sys/fs/cgroup/unified") and os.path.ismount("/sys/fs/cgroup/memory")


def unusable_reason(name: str) -> str | None:
    """Why a runtime cannot run containers on this host, or None when it can."""
    if name == "crun" and hybrid_cgroups():
        return ("crun refuses hybrid cgroup hosts (cgroup v1 controllers with a cgroup2 mount at "
                "/sys/fs/cgroup/unified, as here); use runc, or a host with pure cgroup v1 or v2")
    return None
