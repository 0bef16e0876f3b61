"""The distribution client's protocol pieces: challenges, X-Registry-Auth, platform selection,
insecure registries, and the Bearer token flow against a small stdlib HTTP stub."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from berth.registry.client import Credentials, RegistryError, Repository, decode_registry_auth, resolve
from berth.registry.client.auth import parse_challenges
from berth.registry.client.endpoint import normalize_server
from berth.registry.client.repository import parse_platform, select_platform
from berth.registry.client.session import Session


def test_parse_bearer_and_basic_challenges() -> None:
    chs = parse_challenges('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                           'scope="repository:library/busybox:pull"')
    assert chs[0].scheme == "bearer"
    assert chs[0].params == {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                             "scope": "repository:library/busybox:pull"}
    assert parse_challenges('Basic realm="berth-registry"')[0].scheme == "basic"


def test_registry_auth_header_is_base64url_json() -> None:
    raw = base64.urlsafe_b64encode(json.dumps({"username": "a", "password": "p?>", "serveraddress": "h"}).encode())
    assert decode_registry_auth(raw.decode().rstrip("=")) == Credentials("a", "p?>")
    assert decode_registry_auth("e30=").anonymous
    assert decode_registry_auth("not base64!").anonymous
    assert decode_registry_auth(None).anonymous


@pytest.mark.parametrize(("name", "secure"), [
    ("127.0.0.1:5000", False), ("localhost:5000", False), ("127.9.9.9", False), ("[::1]:5000", False),
    ("registry.example.com", True), ("10.1.2.3:5000", True),
])
def test_loopback_registries_are_insecure(name: str, secure: bool) -> None:
    assert resolve(name).secure is secure


def test_insecure_registry_option_and_hub() -> None:
    assert not resolve("10.1.2.3:5000", ["10.0.0.0/8"]).secure
    assert not resolve("reg.lan:5000", ["reg.lan:5000"]).secure
    hub = resolve("docker.io")
    assert hub.host == "registry-1.docker.io" and hub.secure
    assert normalize_server("https://index.docker.io/v1/") == "docker.io"
    assert normalize_server("http://127.0.0.1:5000/") == "127.0.0.1:5000"


INDEX = {"manifests": [
    {"digest": "sha256:" + "a" * 64, "platform": {"os": "linux", "architecture": "amd64"}},
    {"digest": "sha256:" + "b" * 64, "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
    {"digest": "sha256:" + "c" * 64, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
    {"digest": "sha256:" + "d" * 64, "platform": {"os": "windows", "architecture": "amd64"}},
]}


def test_platform_selection() -> None:
    pick = lambda spec: (select_platform(INDEX, *parse_platform(spec, "linux", "amd64")) or {}).get("digest")  # noqa: E731
    assert pick("") == "sha256:" + "a" * 64
    assert pick("linux/arm64") == "sha256:" + "c" * 64
    assert pick("linux/arm/v7") == "sha256:" + "b" * 64
    assert pick("linux/arm/v6") is None
    assert pick("windows/amd64") == "sha256:" + "d" * 64
    assert pick("linux/s390x") is None


# --- Bearer tokens ------------------------------------------------------------------------------

class _Stub(BaseHTTPRequestHandler):
    token_requests: list[str] = []
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {}, "layers": []}).encode()

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        port = self.server.server_address[1]
        if self.path.startswith("/token"):
            self.token_requests.append(self.path)
            if self.headers.get("Authorization") != "Basic " + base64.b64encode(b"bob:pw").decode():
                self._send(401, b'{"details":"incorrect username or password"}')
                return
            self._send(200, json.dumps({"token": "T0K", "expires_in": 300}).encode())
            return
        if self.headers.get("Authorization") != "Bearer T0K":
            challenge = (f'Bearer realm="http://127.0.0.1:{port}/token",service="stub",'
                         'scope="repository:x/y:pull"')
            self._send(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
                       {"WWW-Authenticate": challenge})
            return
        if self.path == "/v2/x/y/manifests/1":
            self._send(200, self.manifest, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
            return
        self._send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}')


@pytest.fixture
def stub() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    _Stub.token_requests = []
    yield f"127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_bearer_token_flow(stub: str) -> None:
    repo = Repository(Session(resolve(stub), Credentials("bob", "pw"), ["repository:x/y:pull"]), "x/y")
    m = repo.get_manifest("1")
    assert m.media_type == "application/vnd.oci.image.manifest.v1+json"
    assert len(_Stub.token_requests) == 1
    assert "service=stub" in _Stub.token_requests[0] and "scope=repository%3Ax%2Fy%3Apull" in _Stub.token_requests[0]
    repo.get_manifest("1")  # the token is reused
    assert len(_Stub.token_requests) == 1
    with pytest.raises(RegistryError) as ei:
        repo.get_manifest("2")
    assert ei.value.status == 404 and "manifest unknown" in ei.value.message


def test_bearer_wrong_password(stub: str) -> None:
    repo = Repository(Session(resolve(stub), Credentials("bob", "nope"), ["repository:x/y:pull"]), "x/y")
    with pytest.raises(RegistryError) as ei:
        repo.get_manifest("1")
    assert ei.value.status == 401 and "unauthorized" in ei.value.message
