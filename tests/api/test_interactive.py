"""The real docker CLI in a pseudo-terminal: `run -it`, `exec -it`, detach and re-attach."""

from __future__ import annotations

import os
import pty
import select
import time
import uuid

import pytest

from ..conftest import Daemon, docker_cli
from .test_docker_cli import docker

DOCKER = docker_cli()
pytestmark = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")


class Terminal:
    """A docker CLI process on a pty; `expect` reads until a marker shows up."""

    def __init__(self, d: Daemon, *args: str) -> None:
        env = dict(os.environ, DOCKER_HOST=d.host, TERM="xterm")
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: become the docker CLI
            os.execvpe(DOCKER or "docker", [DOCKER or "docker", *args], env)
        self.out = b""

    def expect(self, marker: bytes, timeout: float = 15) -> bytes:
        end = time.time() + timeout
        while marker not in self.out:
            left = end - time.time()
            if left <= 0:
                raise AssertionError(f"{marker!r} not seen; got {self.out[-400:]!r}")
            ready, _, _ = select.select([self.fd], [], [], min(left, 0.2))
            if ready:
                try:
                    data = os.read(self.fd, 4096)
                except OSError:
                    data = b""
                if not data:
                    raise AssertionError(f"{marker!r} not seen before EOF; got {self.out[-400:]!r}")
                self.out += data
        return self.out

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def wait(self, timeout: float = 15) -> int:
        end = time.time() + timeout
        while time.time() < end:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            try:  # keep the pty drained so the CLI never blocks on output
                if select.select([self.fd], [], [], 0.1)[0]:
                    self.out += os.read(self.fd, 4096)
            except OSError:
                time.sleep(0.05)
        raise AssertionError("the docker CLI did not exit")


def test_run_it_takes_commands_and_exit_status(berthd: Daemon) -> None:
    t = Terminal(berthd, "run", "-it", "--rm", "busybox", "sh")
    t.expect(b"# ")
    t.send(b"echo hello-$((40+2))\r")
    t.expect(b"hello-42")
    t.send(b"exit 3\r")
    assert t.wait() == 3


def test_exec_it_and_detach_then_attach(berthd: Daemon) -> None:
    name = f"tty-{uuid.uuid4().hex[:8]}"
    t = Terminal(berthd, "run", "-it", "--name", name, "busybox", "sh")
    try:
        t.expect(b"# ")
        t.send(b"\x10\x11")  # ctrl-p ctrl-q: detach, the container keeps running
        assert t.wait() == 0
        assert docker(berthd, "inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "true"

        e = Terminal(berthd, "exec", "-it", name, "sh")
        e.expect(b"# ")
        e.send(b"echo in-exec-$((6*7))\r")
        e.expect(b"in-exec-42")
        e.send(b"exit 5\r")
        assert e.wait() == 5

        a = Terminal(berthd, "attach", name)
        time.sleep(0.3)
        a.send(b"echo back-$((1+1))\r")
        a.expect(b"back-2")
        a.send(b"exit 4\r")
        assert a.wait() == 4
    finally:
        docker(berthd, "rm", "-f", name)
