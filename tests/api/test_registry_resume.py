"""Resumable downloads: a connection cut in the middle of a layer is picked up with a Range
request, and the pulled image is the one pushed (the digest covers the stitched bytes)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from berth.registry.client import Credentials, Repository
from berth.registry.client.endpoint import Endpoint
from berth.registry.client.session import Session
from tests.conftest import Daemon

from .test_distribution import make_image
from .test_registry_server import Registry, make_registry  # noqa: F401 - fixture


class CuttingProxy:
    """A TCP relay to `target` that cuts the first `cuts` connections that fetch a blob after
    `after` bytes of answers; later connections pass through whole."""

    def __init__(self, target: int, after: int, cuts: int = 1) -> None:
        self.target = target
        self.after = after
        self.cuts = cuts
        self.cut = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._relay, args=(client,), daemon=True)
            t.start()

    def _relay(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target))
        state = {"blob": False}

        def up() -> None:
            try:
                while data := client.recv(65536):
                    if b"GET /v2/" in data and b"/blobs/sha256:" in data:
                        state["blob"] = True
                    upstream.sendall(data)
            except OSError:
                pass
            finally:
                upstream.close()

        threading.Thread(target=up, daemon=True).start()
        sent = 0
        try:
            while data := upstream.recv(65536):
                if state["blob"] and self.cut < self.cuts and sent + len(data) > self.after:
                    client.sendall(data[: self.after - sent])
                    self.cut += 1
                    break
                client.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            try:  # a close alone sends no FIN while the other thread still reads the socket
                client.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            client.close()
            upstream.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def proxy_to(make_registry: Callable[..., Registry]) -> Iterator[Callable[..., tuple[Registry, CuttingProxy]]]:  # noqa: F811
    made: list[CuttingProxy] = []

    def make(after: int, cuts: int = 1) -> tuple[Registry, CuttingProxy]:
        reg = make_registry()
        p = CuttingProxy(reg.port, after, cuts)
        made.append(p)
        return reg, p

    yield make
    for p in made:
        p.close()


def test_blob_reader_resumes_after_a_cut(proxy_to: Callable[..., tuple[Registry, CuttingProxy]]) -> None:
    import os

    reg, proxy = proxy_to(300_000, cuts=2)  # the resumed request is cut again, then goes through
    data = os.urandom(1_000_000)
    digest = reg.push_blob("r/blob", data)
    host = f"127.0.0.1:{proxy.port}"
    repo = Repository(Session(Endpoint(host, host, False), Credentials(), certs_dir=None), "r/blob")
    reader = repo.open_blob(digest, len(data))
    got = bytearray()
    while chunk := reader.read(65536):
        got += chunk
    assert bytes(got) == data and reader.resumed == 2 and proxy.cut == 2


def test_pull_through_cut_connections_keeps_image_id(berthd: Daemon, proxy_to: Callable[..., tuple[Registry, CuttingProxy]]) -> None:
    reg, proxy = proxy_to(3 << 20, cuts=1)
    direct = f"{reg.host}/resume/img"
    image_id = make_image(berthd, f"{direct}:1", 8 << 20)
    status, out = berthd.request("POST", f"/images/{direct}/push?tag=1", timeout=120)
    assert status == 200 and b'"aux"' in out, out
    berthd.request("DELETE", f"/images/{direct}:1")  # its layer goes too: the pull must fetch it
    via = f"127.0.0.1:{proxy.port}/resume/img"
    status, out = berthd.request("POST", f"/images/create?fromImage={via}&tag=1", timeout=120)
    assert status == 200 and b"errorDetail" not in out and b"Downloaded newer image" in out, out
    assert proxy.cut == 1
    info = berthd.json("GET", f"/images/{via}:1/json")
    assert isinstance(info, dict) and info["Id"] == image_id
    berthd.request("DELETE", f"/images/{via}:1")
