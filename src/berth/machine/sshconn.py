"""Reaching an ssh machine with the OpenSSH client (`ssh`, `scp` from Debian's openssh-client).

The system client rather than a Python SSH library: it is what the docker CLI itself runs for
`DOCKER_HOST=ssh://...`, so the user's keys, agent, `~/.ssh/config` (ProxyJump, ...) work the same
for berth and for docker, and no dependency is added. Every run is non-interactive (BatchMode: a
wrong key fails at once instead of prompting) and bounded: ssh's ConnectTimeout for the TCP
connection, a subprocess timeout for the whole command.

Host keys are trusted on first use and kept in the machine's own known_hosts file (in the state
directory, carried by export/import) ahead of the user's, so no certificate or host key depends on
the user's files being right.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass

from .model import MachineError
from .sshscripts import PREAMBLE

CONNECT_TIMEOUT = 8  # ssh's own ConnectTimeout: a host that does not answer
CONNECT_BUDGET = 15.0  # the whole connect step, authentication included


@dataclass(frozen=True)
class SSHTarget:
    machine: str
    host: str
    port: int
    user: str
    identity_file: str | None
    known_hosts: str

    def __str__(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    def options(self, batch: bool = True) -> list[str]:
        opts = ["-o", f"ConnectTimeout={CONNECT_TIMEOUT}", "-o", "ServerAliveInterval=5",
                "-o", "ServerAliveCountMax=3", "-o", "StrictHostKeyChecking=accept-new",
                "-o", f"UserKnownHostsFile={self.known_hosts} ~/.ssh/known_hosts", "-o", "LogLevel=ERROR"]
        if batch:
            opts += ["-o", "BatchMode=yes"]
        if self.identity_file:
            opts += ["-o", "IdentitiesOnly=yes", "-i", self.identity_file]
        return opts

    def ssh_argv(self, remote: list[str], tty: bool = False, batch: bool = True) -> list[str]:
        return ["ssh", *self.options(batch), "-p", str(self.port), "-l", self.user, "-t" if tty else "-T",
                "--", self.host, *remote]

    def remote_path(self, path: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}:{path}"

    def scp_argv(self, sources: list[str], dest: str, recursive: bool = False) -> list[str]:
        """`scp`; paths the caller wants on the machine come already through `remote_path`."""
        return ["scp", *self.options(), "-P", str(self.port), *(["-r"] if recursive else []), "--", *sources, dest]

    def run(self, phase: str, what: str, script: str, args: list[str], timeout: float) -> str:
        """Run a POSIX sh script on the machine (`sh -s -- ARGS`, the script on stdin); its stdout.

        Failures become MachineErrors naming the machine, the phase and what was being done: ssh's
        own (exit 255: unreachable, refused, wrong key, changed host key) or the script's.
        """
        argv = self.ssh_argv([shlex.join(["sh", "-s", "--", *args])])
        try:
            proc = subprocess.run(argv, input=(PREAMBLE + script).encode(), capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise MachineError(self.machine, phase, f"{what}: ssh {self} did not finish within {timeout:.0f} s"
                               ) from None
        except OSError as e:
            raise MachineError(self.machine, phase, f"cannot run ssh: {e}") from None
        out = proc.stdout.decode(errors="replace")
        if proc.returncode == 255:
            raise MachineError(self.machine, phase, f"ssh {self}: {_last_lines(proc.stderr) or 'connection failed'}")
        if proc.returncode != 0:
            detail = _last_lines(proc.stderr) or _last_lines(proc.stdout)
            raise MachineError(self.machine, phase, f"{what} failed on {self.host} (exit {proc.returncode})"
                               + (f": {detail}" if detail else ""))
        return out

    def copy(self, phase: str, local: str, remote_dir: str, timeout: float) -> None:
        try:
            proc = subprocess.run(self.scp_argv([local], self.remote_path(remote_dir + "/")), capture_output=True,
                                  timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise MachineError(self.machine, phase, f"scp to {self} did not finish within {timeout:.0f} s") from None
        if proc.returncode != 0:
            raise MachineError(self.machine, phase, f"scp {os.path.basename(local)} to {self}: "
                               f"{_last_lines(proc.stderr) or 'failed'}")


def _last_lines(data: bytes, n: int = 3) -> str:
    """The end of a command's output, its error lines first (pip ends with notices)."""
    lines = [line.strip() for line in data.decode(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return " | ".join((errors or lines)[-n:])


def parse_keys(out: str) -> dict[str, str]:
    """`key=value` lines printed by the remote scripts."""
    values: dict[str, str] = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.isidentifier():
            values[key] = value
    return values
