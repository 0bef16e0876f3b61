"""`berth registry serve --tls-cert/--tls-key`, and the engine's TLS: certs.d CAs, and an insecure
(loopback) registry reached over HTTPS without verification, as dockerd does."""

from __future__ import annotations

import json
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from berth.registry.client import Credentials, RegistryError
from berth.registry.client.endpoint import Endpoint
from berth.registry.client.session import Session
from tests.conftest import Daemon, busybox_tar

from .test_distribution import make_image
from .test_registry_server import Registry, make_registry, needs_skopeo, skopeo  # noqa: F401 - fixture


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA and a server certificate for 127.0.0.1 (EC P-256, made by the openssl CLI)."""
    d = tmp_path_factory.mktemp("certs")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=berth test CA",
             cwd=d)
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=d)
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf", cwd=d)
    return d


@pytest.fixture
def tls_registry(make_registry: Callable[..., Registry], certs: Path) -> Registry:  # noqa: F811
    ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    return make_registry("--tls-cert", str(certs / "server.crt"), "--tls-key", str(certs / "server.key"), tls=ctx)


def test_certs_dir_ca_is_trusted(tls_registry: Registry, certs: Path, tmp_path: Path) -> None:
    certs_dir = tmp_path / "certs.d"
    endpoint = Endpoint(tls_registry.host, tls_registry.host, True)
    with pytest.raises(RegistryError, match="CERTIFICATE_VERIFY_FAILED"):
        Session(endpoint, Credentials(), certs_dir=str(certs_dir)).request("GET", "/v2/")
    (certs_dir / tls_registry.host).mkdir(parents=True)
    (certs_dir / tls_registry.host / "ca.crt").write_bytes((certs / "ca.crt").read_bytes())
    s = Session(endpoint, Credentials(), certs_dir=str(certs_dir))
    assert s.request("GET", "/v2/").read() == b"{}"
    assert s.url("/v2/").startswith("https://")
    # an insecure endpoint (loopback) finds out it speaks TLS and uses it unverified
    plain = Session(Endpoint(tls_registry.host, tls_registry.host, False), Credentials(), certs_dir=None)
    assert plain.url("/v2/").startswith("https://")  # the insecure probe found TLS


@needs_skopeo
def test_skopeo_over_tls(tls_registry: Registry, certs: Path, tmp_path: Path) -> None:
    cert_dir = tmp_path / "skopeo-certs"
    cert_dir.mkdir()
    (cert_dir / "ca.crt").write_bytes((certs / "ca.crt").read_bytes())
    dest = f"docker://{tls_registry.host}/tls/busybox:1"
    r = skopeo("copy", "--dest-cert-dir", str(cert_dir), f"docker-archive:{busybox_tar()}", dest)
    assert r.returncode == 0, r.stderr
    r = skopeo("inspect", "--tls-verify=true", dest)
    assert r.returncode != 0 and "certificate" in r.stderr, r.stderr  # no CA, no trust
    r = skopeo("inspect", "--cert-dir", str(cert_dir), dest)
    assert r.returncode == 0 and json.loads(r.stdout)["RepoTags"] == ["1"], r.stderr


def test_berthd_pushes_and_pulls_over_tls(berthd: Daemon, tls_registry: Registry) -> None:
    """A loopback registry is insecure for dockerd too: HTTPS without verification, then HTTP."""
    repo = f"{tls_registry.host}/tls/rand"
    image_id = make_image(berthd, f"{repo}:1", 1 << 20)
    status, out = berthd.request("POST", f"/images/{repo}/push?tag=1", timeout=120)
    assert status == 200 and b'"aux"' in out and b"errorDetail" not in out, out
    berthd.request("DELETE", f"/images/{repo}:1")
    status, out = berthd.request("POST", f"/images/create?fromImage={repo}&tag=1", timeout=120)
    assert status == 200 and b"Downloaded newer image" in out, out
    info = berthd.json("GET", f"/images/{repo}:1/json")
    assert isinstance(info, dict) and info["Id"] == image_id
    berthd.request("DELETE", f"/images/{repo}:1")
