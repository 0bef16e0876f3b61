"""berthd and dockerd side by side: both engines' containers keep their connectivity.

dockerd, on a host where it enables IP forwarding itself, sets the filter FORWARD policy to DROP
and puts its own chains first in FORWARD; berth's rules must still let its traffic through. So
that nothing global changes on the machine, the whole scene runs in a private network namespace
("host"): both daemons are started there with `nsenter --net`, dockerd with its own data root,
exec root, socket, pidfile and config file, and a second namespace ("internet") is joined to it
by a veth pair, with a TCP server that answers each client with the address it sees. Skipped when
dockerd is not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from berth.network import netns

from ..conftest import Daemon, _UnixConnection, busybox_tar, network_args, stop_daemon
from .test_docker_cli import DOCKER, docker

DOCKERD = shutil.which("dockerd")
pytestmark = [
    pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed"),
    pytest.mark.skipif(DOCKERD is None, reason="dockerd is not installed"),
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("nsenter") is None, reason="needs root and nsenter"),
]

HOST4, INET4 = "198.51.100.1", "198.51.100.2"  # TEST-NET-2, only inside the two namespaces
HOST6, INET6 = "2001:db8:5::1", "2001:db8:5::2"
ECHO_PORT = 8080
GET = r"printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 {ip} 80"


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@dataclass
class Scene:
    host_ns: str  # /run/netns/<name>
    inet_ns: str
    berth: Daemon
    dockerd: Daemon


def _wait_ping(sock: str, proc: subprocess.Popen[bytes], log: str, what: str, deadline: float = 40) -> None:
    end = time.time() + deadline
    while time.time() < end:
        if proc.poll() is not None:
            with open(log, errors="replace") as f:
                raise RuntimeError(f"{what} exited with {proc.returncode}: {f.read()[-2000:]}")
        try:
            conn = _UnixConnection(sock, 2)
            conn.request("GET", "/_ping")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up in {deadline} s")


def _echo_server(ns_path: str, stop: threading.Event) -> list[socket.socket]:
    """Listeners in the "internet" namespace that write the client's address and close."""
    def make() -> list[socket.socket]:
        out = []
        for family, addr in ((socket.AF_INET, INET4), (socket.AF_INET6, INET6)):
            s = socket.socket(family, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((addr, ECHO_PORT))
            s.listen(16)
            s.settimeout(0.2)
            out.append(s)
        return out

    socks = netns.run_in(ns_path, make)

    def serve(s: socket.socket) -> None:
        while not stop.is_set():
            try:
                conn, peer = s.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(f"{peer[0]}\n".encode())

    for s in socks:
        threading.Thread(target=serve, args=(s,), daemon=True).start()
    return socks


def _from_internet(ns_path: str, port: int) -> str:
    """An HTTP GET to the "host" namespace's address, sent from the "internet" namespace."""
    s = netns.run_in(ns_path, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    with s:
        s.settimeout(5)
        s.connect((HOST4, port))
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    return data.decode(errors="replace")


def _start_berthd(host_ns: str) -> Daemon:
    root = tempfile.mkdtemp(prefix="bt-", dir="/tmp")
    sock, log = os.path.join(root, "berth.sock"), os.path.join(root, "berthd.log")
    bridge, prefix, net_args = network_args()
    with open(log, "ab") as logf:
        proc = subprocess.Popen(
            ["nsenter", f"--net={host_ns}", sys.executable, "-m", "berth.daemon.main", "-H", f"unix://{sock}",
             "--data-root", os.path.join(root, "data"), "--exec-root", os.path.join(root, "run"), *net_args],
            stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
    d = Daemon(root, sock, proc, log, net_args, bridge, prefix)
    try:
        _wait_ping(sock, proc, log, "berthd")
        status, out = d.request("POST", "/images/load?quiet=1", busybox_tar().read_bytes(),
                                {"Content-Type": "application/x-tar"})
        assert status == 200, out
    except BaseException:
        stop_daemon(d)
        raise
    return d


def _start_dockerd(host_ns: str) -> Daemon:
    root = tempfile.mkdtemp(prefix="bd-", dir="/tmp")
    sock, log = os.path.join(root, "d.sock"), os.path.join(root, "dockerd.log")
    cfg = os.path.join(root, "daemon.json")
    with open(cfg, "w") as f:
        json.dump({}, f)  # not the host's /etc/docker/daemon.json
    with open(log, "ab") as logf:
        proc = subprocess.Popen(
            ["nsenter", f"--net={host_ns}", DOCKERD or "dockerd", "--data-root", os.path.join(root, "data"),
             "--exec-root", os.path.join(root, "run"), "-H", f"unix://{sock}",
             "--pidfile", os.path.join(root, "dockerd.pid"), "--config-file", cfg],
            stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
    d = Daemon(root, sock, proc, log)
    try:
        _wait_ping(sock, proc, log, "dockerd")
        docker(d, "load", "-q", "-i", str(busybox_tar()))
    except BaseException:
        _stop_dockerd(d)
        raise
    return d


def _stop_dockerd(d: Daemon) -> None:
    try:
        if d.proc.poll() is None:
            ids = docker(d, "ps", "-aq", check=False).stdout.split()
            if ids:
                docker(d, "rm", "-f", *ids, check=False)
            d.proc.send_signal(signal.SIGTERM)
            d.proc.wait(20)
    except (subprocess.TimeoutExpired, OSError):
        d.proc.kill()
        d.proc.wait(5)
    # its containerd (a child in the same session) and anything else left under its root
    subprocess.run(["pkill", "-9", "-f", f"containerd.*{d.root}"], check=False)
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f if d.root in line.split()[4]]
    for p in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", p], check=False)
    shutil.rmtree(d.root, ignore_errors=True)


@pytest.fixture(scope="module")
def scene() -> Iterator[Scene]:
    tag = os.urandom(3).hex()
    host, inet = f"bdh{tag}", f"bdi{tag}"
    made: list[str] = []
    stop = threading.Event()
    socks: list[socket.socket] = []
    berth: Daemon | None = None
    dockerd: Daemon | None = None
    try:
        for name in (host, inet):
            _run("ip", "netns", "add", name)
            made.append(name)
        _run("ip", "link", "add", f"hv{tag}", "netns", host, "type", "veth", "peer", "name", f"iv{tag}",
             "netns", inet)
        for ns, dev, a4, a6 in ((host, f"hv{tag}", HOST4, HOST6), (inet, f"iv{tag}", INET4, INET6)):
            _run("ip", "-n", ns, "addr", "add", f"{a4}/24", "dev", dev)
            _run("ip", "-n", ns, "-6", "addr", "add", f"{a6}/64", "dev", dev, "nodad")
            _run("ip", "-n", ns, "link", "set", dev, "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        host_ns, inet_ns = f"/run/netns/{host}", f"/run/netns/{inet}"
        socks = _echo_server(inet_ns, stop)
        berth = _start_berthd(host_ns)
        # berth's containers exist before dockerd arrives and changes FORWARD under them.
        docker(berth, "network", "create", "--ipv6", "--subnet", "fd5e:77::/64", "bn")
        docker(berth, "run", "-d", "--name", "ba", "--network", "bn", "busybox", "httpd", "-f", "-p", "80")
        docker(berth, "run", "-d", "--name", "bweb", "-p", "18080:80", "busybox", "httpd", "-f", "-p", "80")
        dockerd = _start_dockerd(host_ns)
        # dockerd sets DROP only when it had to turn forwarding on itself (a host where it starts
        # first); berthd turned it on already here, so set what such a host would have.
        for tool in ("iptables", "ip6tables"):
            _run("nsenter", f"--net={host_ns}", tool, "-w", "-P", "FORWARD", "DROP")
        docker(dockerd, "run", "-d", "--name", "dweb", "-p", "18081:80", "busybox", "httpd", "-f", "-p", "80")
        yield Scene(host_ns, inet_ns, berth, dockerd)
    finally:
        stop.set()
        for s in socks:
            s.close()
        if dockerd is not None:
            _stop_dockerd(dockerd)
        if berth is not None:
            stop_daemon(berth)
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def _in_host(scene: Scene, *argv: str) -> str:
    return subprocess.run(["nsenter", f"--net={scene.host_ns}", *argv], capture_output=True, text=True,
                          check=True).stdout


def test_dockerd_set_forward_drop_and_its_chains(scene: Scene) -> None:
    rules = _in_host(scene, "iptables", "-w", "-S", "FORWARD")
    assert "-P FORWARD DROP" in rules and "DOCKER-USER" in rules, rules
    assert f"-j {scene.berth.iptables_prefix}-FORWARD" in rules


def test_berth_containers_keep_connectivity(scene: Scene) -> None:
    b = scene.berth
    # out of the host, masqueraded to the host's address (the internet has no route back otherwise)
    out = docker(b, "run", "--rm", "busybox", "nc", "-w", "3", INET4, str(ECHO_PORT)).stdout
    assert out.strip() == HOST4
    out6 = docker(b, "run", "--rm", "--network", "bn", "busybox", "nc", "-w", "3", INET6, str(ECHO_PORT)).stdout
    assert out6.strip() == HOST6
    # container to container by name, over IPv4 and IPv6
    assert "HTTP/1." in docker(b, "run", "--rm", "--network", "bn", "busybox", "sh", "-c",
                               GET.format(ip="ba")).stdout
    ba6 = docker(b, "inspect", "-f", "{{(index .NetworkSettings.Networks \"bn\").GlobalIPv6Address}}", "ba").stdout
    assert ba6.strip().startswith("fd5e:77::")
    assert "HTTP/1." in docker(b, "run", "--rm", "--network", "bn", "busybox", "sh", "-c",
                               GET.format(ip=ba6.strip())).stdout
    # a published port, from outside the host
    assert "HTTP/1." in _from_internet(scene.inet_ns, 18080)


def test_dockerd_containers_keep_connectivity(scene: Scene) -> None:
    d = scene.dockerd
    out = docker(d, "run", "--rm", "busybox", "nc", "-w", "3", INET4, str(ECHO_PORT)).stdout
    assert out.strip() == HOST4
    assert "HTTP/1." in _from_internet(scene.inet_ns, 18081)
