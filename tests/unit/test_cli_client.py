"""The Engine API client's wire behaviour: hosts, versions, query encoding, stream framing, hijack.

A small fake daemon on a unix socket records what the real CLI sends, so argument-to-request
mapping is checked end to end without a real engine.
"""

from __future__ import annotations

import io
import json
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from berth.cli.main import main
from berth.client.api import APIClient, negotiate_version
from berth.client.errors import ClientError, DaemonUnreachable
from berth.client.query import Repeated, encode_params
from berth.client.stream import STDERR, STDOUT, encode_frame, iter_frames, iter_json
from berth.client.transport import DEFAULT_HOST, parse_host, resolve_host


def test_hosts() -> None:
    assert parse_host("unix:///run/x.sock").socket_path == "/run/x.sock"
    assert parse_host("/run/x.sock").socket_path == "/run/x.sock"
    tcp = parse_host("tcp://10.0.0.1:2376")
    assert (tcp.tcp_host, tcp.tcp_port) == ("10.0.0.1", 2376)
    assert parse_host("http://[::1]").tcp_port == 2375
    assert parse_host("tcp://[::1]:99").tcp_host == "::1"
    # ssh:// runs what the docker CLI runs: the remote `docker [--host unix://PATH] system dial-stdio`
    assert parse_host("ssh://root@h:2222/run/b.sock").ssh_argv == (
        "ssh", "-o", "ConnectTimeout=30", "-T", "-l", "root", "-p", "2222", "--", "h", "docker",
        "--host", "unix:///run/b.sock", "system", "dial-stdio")
    assert parse_host("ssh://h").ssh_argv == ("ssh", "-o", "ConnectTimeout=30", "-T", "--", "h", "docker",
                                              "system", "dial-stdio")
    for bad in ("ssh://", "ssh://h:x", "nonsense", "unix://", "tcp://h:x"):
        with pytest.raises(ValueError):
            parse_host(bad)
    assert resolve_host(None, {}) == DEFAULT_HOST
    assert resolve_host(None, {"DOCKER_HOST": "tcp://h:1"}) == "tcp://h:1"
    assert resolve_host("unix:///a", {"DOCKER_HOST": "tcp://h:1"}) == "unix:///a"


def test_negotiation() -> None:
    assert negotiate_version("1.41") == "1.41"
    assert negotiate_version("1.50") == "1.45"
    assert negotiate_version("1.9") == "1.9"
    assert negotiate_version(None) == "1.24"


def test_encode_params() -> None:
    q = encode_params(
        {
            "all": True,
            "size": False,
            "x": None,
            "filters": {"status": ["exited"]},
            "names": Repeated(["a", "b:1"]),
        }
    )
    assert parse_qs(q) == {
        "all": ["1"],
        "size": ["0"],
        "filters": ['{"status":["exited"]}'],
        "names": ["a", "b:1"],
    }


class _Trickle:
    """A reader that hands out at most `step` bytes per call, to exercise reassembly."""

    def __init__(self, data: bytes, step: int) -> None:
        self.buf = io.BytesIO(data)
        self.step = step

    def read1(self, n: int = -1, /) -> bytes:
        return self.buf.read(min(self.step, n if n > 0 else self.step))


@pytest.mark.parametrize("step", [1, 3, 8, 1000])
def test_frames(step: int) -> None:
    data = (
        encode_frame(STDOUT, b"out\n") + encode_frame(STDERR, b"") + encode_frame(STDERR, "é".encode() * 40)
    )
    assert list(iter_frames(_Trickle(data, step))) == [(1, b"out\n"), (2, b""), (2, "é".encode() * 40)]


def test_truncated_frame_ends_stream() -> None:
    data = encode_frame(STDOUT, b"whole") + encode_frame(STDOUT, b"cut-off")[:-3]
    assert list(iter_frames(_Trickle(data, 4))) == [(1, b"whole"), (1, b"cut-")]


@pytest.mark.parametrize("step", [1, 2, 7, 1000])
def test_json_lines(step: int) -> None:
    data = '{"stream":"Loaded image: é\\n"}\r\n{"status":"x"}{"a":[1,2]}\n'.encode()
    data += '{"snow": "☃"}'.encode()
    assert list(iter_json(_Trickle(data, step))) == [
        {"stream": "Loaded image: é\n"},
        {"status": "x"},
        {"a": [1, 2]},
        {"snow": "☃"},
    ]


# --- a fake daemon ------------------------------------------------------------------------------


class FakeDaemon(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str) -> None:
        self.requests: list[tuple[str, str, dict[str, list[str]], Any]] = []
        super().__init__(path, Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The client closing its end after reading a reply is normal, not a test failure.
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeDaemon

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        raw = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        self.send_response(status)
        for k, v in (headers or {"Content-Type": "application/json"}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        self.wfile.write(raw)

    def _handle(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.server.requests.append((self.command, url.path, parse_qs(url.query), body))
        path = url.path
        if path == "/_ping":
            return self._reply(200, b"OK", {"API-Version": "1.41", "Content-Type": "text/plain"})
        if path == "/v1.41/containers/json":
            return self._reply(200, [])
        if path == "/v1.41/containers/missing/stop":
            return self._reply(404, {"message": "No such container: missing"})
        if path.endswith("/stop") or path.endswith("/start"):
            return self._reply(204)
        if path == "/v1.41/containers/create":
            return self._reply(201, {"Id": "c" * 64, "Warnings": []})
        if path.endswith("/wait"):
            return self._reply(200, {"StatusCode": 3})
        if path.endswith("/attach"):
            assert self.headers.get("Upgrade") == "tcp"
            frames = encode_frame(STDOUT, b"hello\n") + encode_frame(STDERR, b"oops\n")
            # Send the head and the first frames in one write: the client must not lose them.
            self.wfile.write(
                b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
                b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n" + frames
            )
            self.wfile.flush()
            self.close_connection = True
            return None
        return self._reply(404, {"message": f"page not found: {path}"})

    do_GET = do_POST = do_DELETE = _handle


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[tuple[FakeDaemon, str]]:
    path = str(tmp_path / "fake.sock")
    server = FakeDaemon(path)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server, f"unix://{path}"
    server.shutdown()
    server.server_close()


def test_client_errors(fake: tuple[FakeDaemon, str]) -> None:
    server, host = fake
    api = APIClient(host)
    with pytest.raises(ClientError) as info:
        api.containers.stop("missing")
    assert (info.value.status, info.value.message) == (404, "No such container: missing")
    assert api.api_version == "1.41"
    with pytest.raises(DaemonUnreachable):
        APIClient("unix:///nonexistent/berth.sock").containers.list()


def test_ps_request(fake: tuple[FakeDaemon, str], capsys: pytest.CaptureFixture[str]) -> None:
    server, host = fake
    assert main(["-H", host, "ps", "-a", "--filter", "status=exited", "-n", "2", "-q"]) == 0
    method, path, query, _ = server.requests[-1]
    assert (method, path) == ("GET", "/v1.41/containers/json")
    assert query == {"all": ["1"], "limit": ["2"], "filters": ['{"status":["exited"]}']}
    assert capsys.readouterr().out == ""


def test_stop_reports_each_name(fake: tuple[FakeDaemon, str], capsys: pytest.CaptureFixture[str]) -> None:
    server, host = fake
    assert main(["-H", host, "stop", "-t", "5", "a", "missing"]) == 1
    out = capsys.readouterr()
    assert out.out == "a\n"
    assert out.err == "Error response from daemon: No such container: missing\n"
    assert ("POST", "/v1.41/containers/a/stop", {"t": ["5"]}, None) in server.requests


def test_run_attaches_and_exits_with_status(
    fake: tuple[FakeDaemon, str], capfd: pytest.CaptureFixture[str]
) -> None:
    server, host = fake
    assert main(["-H", host, "run", "--rm", "--name", "x", "-e", "A=1", "busybox", "sh", "-c", "exit 3"]) == 3
    out = capfd.readouterr()
    assert out.out == "hello\n" and out.err == "oops\n"
    create = next(r for r in server.requests if r[1] == "/v1.41/containers/create")
    assert create[2] == {"name": ["x"]}
    assert create[3]["Cmd"] == ["sh", "-c", "exit 3"] and create[3]["Env"] == ["A=1"]
    assert create[3]["HostConfig"]["AutoRemove"] is True
    wait = next(r for r in server.requests if r[1].endswith("/wait"))
    assert wait[2] == {"condition": ["removed"]}
    order = [r[1].rsplit("/", 1)[-1] for r in server.requests if r[1] != "/_ping"]
    # wait and attach must be in place before start, or a fast container's output is lost. (The
    # fake daemon serves each connection in a thread: the two may be logged in either order.)
    assert order.index("start") > max(order.index("attach"), order.index("wait"))


def test_usage_error_exits_125(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ps", "--bogus"]) == 125
    assert "--bogus" in capsys.readouterr().err


def test_version_fast_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == "berth version 0.1.0\n"
