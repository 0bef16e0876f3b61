#!/usr/bin/env python3
"""`docker logs -f`: how late a line arrives, and what idle followers cost the engine.

    python3 bench/logs_bench.py [--berth unix:///run/berth/berth.sock]
                                [--dockerd unix:///var/run/docker.sock] [--followers 20] [--skip berth|dockerd]

Per engine: a container prints a line every 0.2 s; a client follows its log over the Engine API
(`follow=1&timestamps=1`) for 6 s and takes, per line, arrival time minus the timestamp the engine
gave it (median and max). Then 20 idle containers each get a following client, and the engine's
CPU time (utime+stime of its process, from /proc) over 10 s is read. Both figures are the
engine's alone (no CLI). Everything made is removed at the end. Stdlib only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import time
from datetime import datetime


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def call(sock: str, method: str, path: str, body: dict | None = None) -> dict:
    conn = _Unix(sock)
    try:
        conn.request(method, "/v1.41" + path, body=json.dumps(body) if body is not None else None,
                     headers={"Content-Type": "application/json"})
        raw = conn.getresponse().read()
    finally:
        conn.close()
    return json.loads(raw) if raw.strip().startswith(b"{") else {}


def run(sock: str, name: str, cmd: list[str]) -> str:
    cid = call(sock, "POST", f"/containers/create?name={name}", {"Image": "busybox", "Cmd": cmd})["Id"]
    call(sock, "POST", f"/containers/{cid}/start")
    return cid


def follow_latency(sock: str, name: str, seconds: float = 6.0) -> list[float]:
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    s.sendall(f"GET /v1.41/containers/{name}/logs?follow=1&stdout=1&timestamps=1&tail=0 HTTP/1.1\r\n"
              "Host: x\r\n\r\n".encode())
    s.settimeout(0.5)
    buf, delays, end = b"", [], time.time() + seconds
    while time.time() < end:
        try:
            data = s.recv(65536)
        except TimeoutError:
            continue
        now = time.time()
        buf += data
        *lines, buf = buf.split(b"\n")
        for line in lines:
            at = line.find(b"20")
            if at < 0:
                continue
            stamp = line[at:].split(b" ")[0].decode(errors="replace").replace("Z", "")
            whole, _, frac = stamp.partition(".")
            try:
                t = datetime.fromisoformat(whole + "+00:00").timestamp() + float("0." + (frac or "0"))
            except ValueError:
                continue
            delays.append((now - t) * 1000)
    s.close()
    return delays


def engine_pid(sock: str) -> int:
    # the process listening on the socket: its inode in /proc/net/unix, then the owner of that fd
    inode = None
    with open("/proc/net/unix") as f:
        for line in f:
            if line.rstrip().endswith(" " + sock):
                inode = line.split()[6]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return int(pid)
        except OSError:
            continue
    raise RuntimeError(f"no process listens on {sock}")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench(label: str, host: str, followers: int) -> dict[str, float]:
    sock = host.removeprefix("unix://")
    tag = f"logsbench{os.getpid()}"
    made = []
    try:
        made.append(run(sock, f"{tag}-talk", ["sh", "-c", "while :; do echo x; sleep 0.2; done"]))
        delays = follow_latency(sock, f"{tag}-talk")
        clients = []
        for i in range(followers):
            made.append(run(sock, f"{tag}-{i}", ["sleep", "1000"]))
            clients.append(subprocess.Popen(
                ["python3", "-c", "import socket,sys\ns=socket.socket(socket.AF_UNIX);s.connect(sys.argv[1])\n"
                 "s.sendall(sys.argv[2].encode())\nwhile s.recv(65536): pass",
                 sock, f"GET /v1.41/containers/{tag}-{i}/logs?follow=1&stdout=1 HTTP/1.1\r\nHost: x\r\n\r\n"]))
        time.sleep(2)
        pid = engine_pid(sock)
        before = cpu_seconds(pid)
        time.sleep(10)
        idle_ms = (cpu_seconds(pid) - before) * 1000
        for p in clients:
            p.kill()
            p.wait()
    finally:
        for cid in made:
            call(sock, "DELETE", f"/containers/{cid}?force=1")
    out = {"latency median ms": statistics.median(delays), "latency max ms": max(delays),
           f"CPU ms / 10 s, {followers} idle followers": idle_ms}
    print(f"{label}: " + ", ".join(f"{k} {v:.1f}" for k, v in out.items()), flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--berth", default="unix:///run/berth/berth.sock")
    ap.add_argument("--dockerd", default="unix:///var/run/docker.sock")
    ap.add_argument("--followers", type=int, default=20)
    ap.add_argument("--skip", choices=["berth", "dockerd"])
    args = ap.parse_args()
    for label, host in (("berth", args.berth), ("dockerd", args.dockerd)):
        if label != args.skip:
            bench(label, host, args.followers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
