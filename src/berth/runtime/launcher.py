"""The exec launcher: a small single-threaded process that forks processes into running containers.

`runc exec` costs 20-40 ms (a Go runtime started twice and the seccomp profile compiled again for
every exec); an exec here is a fork of this already-running process that joins the container's
namespaces and cgroups, takes the container's capabilities, user, rlimits and seccomp program
(compiled once by the daemon, seccomp_bpf.py) and execs, in about a millisecond. It is a separate
process because forking the multi-threaded daemon is unsafe.

Protocol (SOCK_SEQPACKET, one JSON message each): the daemon sends a request with the process's
stdin, stdout and stderr as SCM_RIGHTS; the launcher answers {"id", "pid"} once the process has
exec'd or {"id", "error"} when it could not, then {"id", "exit"} when it ends.

The order of the steps follows runc's `setns` init, so the process is what `runc exec` would make:
namespaces except mount and cgroup, fork (to enter the PID namespace); the child moves itself
into the v1 cgroups (from the host's view), then takes the cgroup and mount namespaces, cwd,
rlimits, no_new_privs, seccomp (before dropping capabilities unless no_new_privs is set), bounding
set, user, capabilities, and execs once the parent says go. On a pure v2 host the parent moves it
into its v2 cgroup before that go; on a hybrid host (v1 controllers, a v2 side mount without any)
into the v2 cgroup right after the exec, membership there accounting for nothing.
"""

from __future__ import annotations

import base64
import ctypes
import fcntl
import json
import os
import resource  # imported here: inside the container's mount namespace nothing can be imported
import selectors
import signal
import socket
import struct
import sys
from typing import Any

PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_SECCOMP = 22
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
SECCOMP_MODE_FILTER = 2
LINUX_CAPABILITY_VERSION_3 = 0x20080522
CLONE_NEWNS, CLONE_NEWCGROUP = 0x00020000, 0x02000000
NS_ORDER = ("ipc", "uts", "net", "pid")  # mount and cgroup come after the move into the cgroups
MAX_MESSAGE = 1 << 20
TIOCSCTTY, TIOCGPTN, TIOCSPTLCK = 0x540E, 0x80045430, 0x40045431

CAPS = ("CAP_CHOWN CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER CAP_FSETID CAP_KILL CAP_SETGID "
        "CAP_SETUID CAP_SETPCAP CAP_LINUX_IMMUTABLE CAP_NET_BIND_SERVICE CAP_NET_BROADCAST CAP_NET_ADMIN "
        "CAP_NET_RAW CAP_IPC_LOCK CAP_IPC_OWNER CAP_SYS_MODULE CAP_SYS_RAWIO CAP_SYS_CHROOT CAP_SYS_PTRACE "
        "CAP_SYS_PACCT CAP_SYS_ADMIN CAP_SYS_BOOT CAP_SYS_NICE CAP_SYS_RESOURCE CAP_SYS_TIME "
        "CAP_SYS_TTY_CONFIG CAP_MKNOD CAP_LEASE CAP_AUDIT_WRITE CAP_AUDIT_CONTROL CAP_SETFCAP "
        "CAP_MAC_OVERRIDE CAP_MAC_ADMIN CAP_SYSLOG CAP_WAKE_ALARM CAP_BLOCK_SUSPEND CAP_AUDIT_READ "
        "CAP_PERFMON CAP_BPF CAP_CHECKPOINT_RESTORE").split()
CAP_NUMBER = {name: i for i, name in enumerate(CAPS)}

_libc = ctypes.CDLL(None, use_errno=True)


class _Failure(Exception):
    pass


def _check(rc: int, what: str) -> None:
    if rc < 0:
        err = ctypes.get_errno()
        raise _Failure(f"{what}: {os.strerror(err).lower()}")


def _prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return int(_libc.prctl(option, ctypes.c_ulong(arg2), ctypes.c_ulong(arg3), ctypes.c_ulong(arg4),
                           ctypes.c_ulong(arg5)))


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return len(CAPS) - 1


def _mask(names: list[str]) -> int:
    mask = 0
    for name in names:
        num = CAP_NUMBER.get(name)
        if num is not None:
            mask |= 1 << num
    return mask


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _load_seccomp(program: bytes) -> None:
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    _check(_prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog)), "load seccomp filter")


def _apply_caps(caps: dict[str, list[str]]) -> None:
    bounding = _mask(caps.get("bounding", []))
    for num in range(_last_cap() + 1):
        if not bounding >> num & 1:
            _check(_prctl(PR_CAPBSET_DROP, num), "drop bounding capability")


def _set_caps(caps: dict[str, list[str]]) -> None:
    eff, prm, inh = (_mask(caps.get(k, [])) for k in ("effective", "permitted", "inheritable"))
    header = _CapHeader(LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)(_CapData(eff & 0xFFFFFFFF, prm & 0xFFFFFFFF, inh & 0xFFFFFFFF),
                          _CapData(eff >> 32, prm >> 32, inh >> 32))
    _check(_libc.capset(ctypes.byref(header), data), "capset")
    _check(_prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL), "clear ambient capabilities")
    for name in caps.get("ambient", []):
        if name in CAP_NUMBER:
            _check(_prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NUMBER[name]), "raise ambient capability")


_RT_SIGACTION = {"x86_64": 13, "aarch64": 134}.get(os.uname().machine)


def _default_disposition(sig: int) -> None:
    """SIG_DFL by the raw syscall: a zeroed kernel sigaction (handler, flags, [restorer,] mask)."""
    if _RT_SIGACTION is not None:
        action = (ctypes.c_uint64 * 4)()
        _libc.syscall(_RT_SIGACTION, sig, ctypes.byref(action), None, 8)


def _home(uid: int) -> str:
    try:
        with open("/etc/passwd") as f:
            for line in f:
                parts = line.rstrip("\n").split(":")
                if len(parts) >= 6 and parts[2] == str(uid):
                    return parts[5] or "/"
    except OSError:
        pass
    return "/"


def _open_terminal(console: int, uid: int) -> None:
    """A pty of the container's own devpts as this process's controlling terminal and stdio, as
    runc makes one for `exec -t`; the master goes back to the daemon over `console`."""
    try:
        master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
        (index,) = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0\0\0\0"))
        slave = os.open(f"/dev/pts/{index}", os.O_RDWR | os.O_NOCTTY)
    except OSError as e:
        raise _Failure(f"open a terminal in the container: {(e.strerror or str(e)).lower()}") from None
    os.fchown(slave, uid, -1)
    socket.send_fds(socket.socket(fileno=console), [b"m"], [master])
    os.close(master)
    fcntl.ioctl(slave, TIOCSCTTY, 0)
    for target in (0, 1, 2):
        os.dup2(slave, target)
    os.close(slave)


def _lookpath(name: str, env: dict[str, str]) -> str:
    """The executable as runc finds it: a name with a slash as is, else the first on $PATH."""
    if "/" in name:
        try:
            os.stat(name)
        except OSError as e:
            raise _Failure(f'exec: "{name}": stat {name}: {(e.strerror or str(e)).lower()}') from None
        return name
    for d in env.get("PATH", "").split(":"):
        path = os.path.join(d or ".", name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise _Failure(f'exec: "{name}": executable file not found in $PATH')


def _finish_in_container(req: dict[str, Any], ns_fds: dict[str, int], program: bytes | None,
                         keep: int, moved: int, console: int) -> None:
    """In the PID namespace and the v1 cgroups already: become the container's process, exec once
    `moved` says go. Never returns: execs, or raises _Failure."""
    process = req["process"]
    for name in ("cgroup", "mnt"):
        if name in ns_fds:
            _check(_libc.setns(ns_fds[name], CLONE_NEWCGROUP if name == "cgroup" else CLONE_NEWNS),
                   f"setns {name}")
    for fd in ns_fds.values():
        os.close(fd)
    cwd = process.get("cwd") or "/"
    try:
        os.chdir(cwd)
    except OSError as e:
        raise _Failure(f'chdir to cwd ("{cwd}") set in config.json failed: {(e.strerror or "").lower()}') from None
    os.setsid()
    user = process.get("user") or {}
    uid, gid = int(user.get("uid", 0)), int(user.get("gid", 0))
    if process.get("terminal"):
        _open_terminal(console, uid)
    if process.get("rlimits"):
        for r in process["rlimits"]:
            res = getattr(resource, r["type"], None)
            if res is not None:
                resource.setrlimit(res, (r["soft"], r["hard"]))
    if "oomScoreAdj" in process:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(process["oomScoreAdj"]))
    nnp = bool(process.get("noNewPrivileges"))
    if nnp:
        _check(_prctl(PR_SET_NO_NEW_PRIVS, 1), "set no_new_privs")
    if program and not nnp:
        _load_seccomp(program)  # a privileged operation: before the capabilities go
    caps = process.get("capabilities") or {}
    _apply_caps(caps)
    _check(_prctl(PR_SET_KEEPCAPS, 1), "keep capabilities")
    os.setgroups([int(g) for g in user.get("additionalGids") or []])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    _check(_prctl(PR_SET_KEEPCAPS, 0), "clear keep capabilities")
    _set_caps(caps)
    if program and nnp:
        _load_seccomp(program)
    env = dict(e.split("=", 1) if "=" in e else (e, "") for e in process.get("env") or [])
    if "HOME" not in env:
        env["HOME"] = _home(uid)
    args = process["args"]
    path = _lookpath(args[0], env)
    # Every disposition back to default: Python ignores SIGPIPE and SIGXFSZ, and whatever the
    # daemon inherited as ignored (a shell's background job ignores SIGINT and SIGQUIT) would
    # otherwise pass through execve to the container's process.
    for sig in range(1, signal.NSIG):
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            try:
                signal.signal(sig, signal.SIG_DFL)
            except (OSError, ValueError):  # the C library's own (32, 33) refuse its wrapper
                _default_disposition(sig)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    # On a pure v2 host the parent moves us into the v2 cgroup meanwhile (that move waits for an
    # RCU grace period, ~10 ms): the program must not start before it is done.
    if os.read(moved, 1) != b"x":
        raise _Failure("could not join the container's cgroups")
    os.closerange(3, keep)  # `keep` is close-on-exec: it tells the launcher whether exec worked
    os.closerange(keep + 1, 1 << 20)
    try:
        os.execve(path, args, env)
    except OSError as e:
        raise _Failure(f'exec: "{args[0]}": {(e.strerror or str(e)).lower()}') from None


def _start_time(pid: int) -> str:  # oci.started_at's twin: this process imports nothing of berth
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[19]


def _join_v1(dirs: list[str]) -> None:
    """Move this (single-threaded) process into the v1 cgroups through their `tasks` files, thread
    "0": the kernel moves just the caller without the global write lock that moving a process by
    `cgroup.procs` takes, whose first use in a while waits for an RCU grace period (~10 ms)."""
    for d in dirs:
        try:
            with open(os.path.join(d, "tasks"), "w") as f:
                f.write("0")
        except OSError as e:
            raise _Failure(f"join cgroup {d}: {(e.strerror or str(e)).lower()}") from None


def _inner_pid(pid: int) -> int:
    """The pid of host process `pid` in its own (innermost) PID namespace; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError):
        pass
    return 0


def _move(dirs: list[str], pid: int) -> None:
    for d in dirs:
        with open(os.path.join(d, "cgroup.procs"), "w") as f:
            f.write(str(pid))


def _run_request(req: dict[str, Any], fds: list[int], report: int) -> int:
    """In a fresh child of the launcher: returns the exit status to hand back (the process's code,
    or 128+signal), after reporting the pid or the failure on `report`."""
    def tell(msg: dict[str, Any]) -> None:
        os.write(report, json.dumps(msg).encode() + b"\n")

    _prctl(PR_SET_DUMPABLE, 0)  # the container must not reach this process's memory or fds
    init = int(req["init_pid"])
    try:
        pidfd = os.pidfd_open(init)
        ns_fds = {name: os.open(f"/proc/{init}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
                  for name in (*NS_ORDER, "cgroup", "mnt") if name in req["namespaces"]}
        # The fds above belong to the container's init only if it is still that process.
        signal.pidfd_send_signal(pidfd, 0)
        if _start_time(init) != req["init_start"]:
            raise ProcessLookupError
    except (ProcessLookupError, FileNotFoundError):
        tell({"error": "container is not running"})
        return 126
    program = base64.b64decode(req["seccomp"]) if req.get("seccomp") else None
    try:
        for name in NS_ORDER:
            if name in ns_fds:
                _check(_libc.setns(ns_fds.pop(name), 0), f"setns {name}")
    except _Failure as e:
        tell({"error": str(e)})
        return 126
    v1_dirs, v2_dirs, v2_controllers = req["cgroups"]
    go_r, go_w = os.pipe()
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    child = os.fork()
    if child == 0:
        code = 126
        try:
            os.close(go_w)
            os.close(err_r)
            stdio, console = fds[:3], (fds[3] if len(fds) > 3 else -1)
            for target, fd in enumerate(stdio):
                os.dup2(fd, target)
            for fd in stdio:
                if fd > 2:
                    os.close(fd)
            _join_v1(v1_dirs)
            _finish_in_container(req, ns_fds, program, keep=err_w, moved=go_r, console=console)
        except _Failure as e:
            os.write(err_w, str(e).encode())
        except BaseException as e:  # noqa: BLE001 - the child must never return into the launcher
            os.write(err_w, f"exec failed: {e}".encode())
        os._exit(code)
    os.close(go_r)
    os.close(err_w)
    for fd in fds:
        os.close(fd)
    for fd in ns_fds.values():
        os.close(fd)
    join_error = None
    if v2_controllers:  # a pure v2 host: its controllers apply from the first instruction on
        try:
            _move(v2_dirs, child)
        except OSError as e:
            join_error = e  # the child may have failed already (and gone): its reason comes first
            os.kill(child, signal.SIGKILL)
    try:
        os.write(go_w, b"x" if join_error is None else b"-")
    except BrokenPipeError:
        pass  # it failed before needing the go-ahead
    os.close(go_w)
    failure = b""
    while chunk := os.read(err_r, 4096):
        failure += chunk
    os.close(err_r)
    if failure or join_error is not None:
        os.waitpid(child, 0)
        why = failure.decode(errors="replace") if failure else f"join cgroup: {join_error}"
        tell({"error": "exec failed: unable to start container process: " + why})
        return 126
    tell({"pid": child})
    if v2_dirs and not v2_controllers:
        # A hybrid host's v2 side mount carries no controller: membership only, taken by a process
        # of its own once the program runs, since this whole-process move may wait for an RCU
        # grace period (~10 ms) and neither the exec nor its exit report should. That process is
        # born in the container's PID namespace (ours is set for children): it names the
        # program by its pid there.
        inner = _inner_pid(child)
        if inner and os.fork() == 0:
            try:
                os.close(report)
                _move(v2_dirs, inner)
            except OSError:
                pass  # gone already: nothing to account
            os._exit(0)
    _, status = os.waitpid(child, 0)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


class Launcher:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sel = selectors.DefaultSelector()
        self.sel.register(sock, selectors.EVENT_READ, self._on_request)
        self.children: dict[int, tuple[str, int, int]] = {}  # pid -> (request id, report fd, pidfd)

    def _send(self, msg: dict[str, Any]) -> None:
        try:
            self.sock.send(json.dumps(msg).encode())
        except OSError:
            pass

    def _on_request(self, _: int) -> None:
        data, fds, _flags, _addr = socket.recv_fds(self.sock, MAX_MESSAGE, 4)
        if not data:
            sys.exit(0)  # the daemon is gone
        req = json.loads(data)
        rid = req["id"]
        report_r, report_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            code = 126
            try:
                self.sel.close()
                self.sock.close()
                for info in self.children.values():
                    os.close(info[1])
                    os.close(info[2])
                os.close(report_r)
                code = _run_request(req, fds, report_w)
            finally:
                os._exit(code)
        for fd in fds:
            os.close(fd)
        os.close(report_w)
        pidfd = os.pidfd_open(pid)
        self.children[pid] = (rid, report_r, pidfd)
        self.sel.register(report_r, selectors.EVENT_READ, lambda fd: self._on_report(fd, rid))
        self.sel.register(pidfd, selectors.EVENT_READ, lambda fd: self._on_exit(pid))

    def _on_report(self, fd: int, rid: str) -> None:
        data = os.read(fd, 65536)
        self.sel.unregister(fd)
        for line in data.splitlines():
            self._send({"id": rid, **json.loads(line)})
        if not data:
            self._send({"id": rid, "error": "exec failed: the launcher's child died"})

    def _on_exit(self, pid: int) -> None:
        rid, report_r, pidfd = self.children.pop(pid)
        try:
            self.sel.unregister(report_r)
        except KeyError:
            pass
        else:
            self._on_report_final(report_r, rid)
        self.sel.unregister(pidfd)
        os.close(pidfd)
        os.close(report_r)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
        self._send({"id": rid, "exit": code})

    def _on_report_final(self, fd: int, rid: str) -> None:
        data = os.read(fd, 65536)
        for line in data.splitlines():
            self._send({"id": rid, **json.loads(line)})

    def serve(self) -> None:
        while True:
            for key, _ in self.sel.select():
                if self.sel.get_map().get(key.fd) is key:  # an earlier callback may have closed it
                    key.data(key.fd)


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the daemon decides when this ends
    Launcher(sock).serve()


if __name__ == "__main__":
    main()
