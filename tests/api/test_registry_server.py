"""`berth registry serve` as its own process, driven by skopeo and by raw HTTP for the error cases.

Case names in comments refer to the OCI distribution-spec conformance suite
(shared/specs/oci-distribution-conformance-cases.txt).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import busybox_tar

SKOPEO = shutil.which("skopeo")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)

    @property
    def code(self) -> str:
        return self.json()["errors"][0]["code"]


@dataclass
class Registry:
    root: str
    port: int
    args: list[str]
    proc: subprocess.Popen[bytes]
    auth: tuple[str, str] | None = None
    tls: ssl.SSLContext | None = None  # how the tests trust a registry started with --tls-cert

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, auth: bool = True) -> Reply:
        conn = (http.client.HTTPSConnection("127.0.0.1", self.port, timeout=60, context=self.tls) if self.tls
                else http.client.HTTPConnection("127.0.0.1", self.port, timeout=60))
        hdrs = dict(headers or {})
        if auth and self.auth:
            hdrs["Authorization"] = "Basic " + base64.b64encode(":".join(self.auth).encode()).decode()
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        out = resp.read()
        conn.close()
        return Reply(resp.status, resp.headers, out)

    def push_blob(self, repo: str, data: bytes) -> str:
        digest = sha256(data)
        r = self.request("POST", f"/v2/{repo}/blobs/uploads/?digest={digest}", data,
                         {"Content-Type": "application/octet-stream"})
        assert r.status == 201, r
        return digest

    def push_manifest(self, repo: str, ref: str, manifest: dict, media_type: str = OCI_MANIFEST) -> Reply:
        body = json.dumps(manifest).encode()
        return self.request("PUT", f"/v2/{repo}/manifests/{ref}", body, {"Content-Type": media_type})

    def push_image(self, repo: str, tag: str, layer: bytes = b"layer", **extra: object) -> tuple[str, bytes]:
        """A tiny OCI image (empty config, one layer); returns its digest and manifest bytes."""
        cfg = self.push_blob(repo, b"{}")
        lay = self.push_blob(repo, layer)
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": EMPTY_CONFIG, "digest": cfg, "size": 2},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": lay,
                                "size": len(layer)}], **extra}
        body = json.dumps(manifest).encode()
        r = self.request("PUT", f"/v2/{repo}/manifests/{tag}", body, {"Content-Type": OCI_MANIFEST})
        assert r.status == 201, r
        return r.headers["Docker-Content-Digest"], body

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "berth.registry.server", "--addr", self.host, "--root", self.root,
             *self.args], stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.root + ".log"), "ab"))
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"registry exited: {Path(self.root + '.log').read_text()[-2000:]}")
            try:
                self.request("GET", "/v2/")
                return
            except OSError:
                time.sleep(0.05)
        self.proc.kill()
        raise RuntimeError("registry did not come up")


@pytest.fixture
def make_registry() -> Iterator[Callable[..., Registry]]:
    made: list[Registry] = []
    tmp = tempfile.mkdtemp(prefix="breg-")

    def make(*args: str, auth: tuple[str, str] | None = None, tls: ssl.SSLContext | None = None) -> Registry:
        root = os.path.join(tmp, f"root{len(made)}")
        reg = Registry(root, _free_port(), list(args), None, auth, tls)  # type: ignore[arg-type]
        reg.start()
        made.append(reg)
        return reg

    yield make
    for reg in made:
        reg.stop()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def registry(make_registry: Callable[..., Registry]) -> Registry:
    return make_registry("--delete")


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SKOPEO or "skopeo", "--insecure-policy", *args], capture_output=True, text=True,
                          timeout=300)


# --- real clients -------------------------------------------------------------------------------

needs_skopeo = pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed")


@needs_skopeo
def test_skopeo_copies_in_and_out(registry: Registry, tmp_path: Path) -> None:
    dest = f"docker://{registry.host}/test/busybox:1"
    r = skopeo("copy", "--dest-tls-verify=false", f"docker-archive:{busybox_tar()}", dest)
    assert r.returncode == 0, r.stderr
    r = skopeo("copy", "--src-tls-verify=false", dest, f"oci:{tmp_path / 'oci'}:busybox")
    assert r.returncode == 0, r.stderr
    r = skopeo("copy", "--src-tls-verify=false", dest, f"docker-archive:{tmp_path / 'out.tar'}:busybox:1")
    assert r.returncode == 0, r.stderr
    # and back in from the OCI layout, to another repository: blobs are found, manifest accepted
    r = skopeo("copy", "--dest-tls-verify=false", f"oci:{tmp_path / 'oci'}:busybox",
               f"docker://{registry.host}/other/busybox:2")
    assert r.returncode == 0, r.stderr
    inspect = json.loads(skopeo("inspect", "--tls-verify=false", dest).stdout)
    assert inspect["RepoTags"] == ["1"] and inspect["Os"] == "linux"
    assert registry.request("GET", "/v2/_catalog").json() == {"repositories": ["other/busybox", "test/busybox"]}
    got = registry.request("GET", f"/v2/test/busybox/manifests/{inspect['Digest']}")
    assert got.status == 200 and sha256(got.body) == inspect["Digest"]


@needs_skopeo
def test_htpasswd_basic_auth(make_registry: Callable[..., Registry], tmp_path: Path) -> None:
    import bcrypt

    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(5)).decode().replace("$2b$", "$2y$", 1)
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"alice:{hashed}\n")
    reg = make_registry("--htpasswd", str(htpasswd), auth=("alice", "s3cret"))
    anon = reg.request("GET", "/v2/", auth=False)
    assert anon.status == 401 and anon.code == "UNAUTHORIZED"
    assert anon.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert reg.request("GET", "/v2/").status == 200
    reg.auth = ("alice", "wrong")
    assert reg.request("GET", "/v2/_catalog").status == 401
    reg.auth = ("alice", "s3cret")

    dest = f"docker://{reg.host}/private/busybox:1"
    denied = skopeo("copy", "--dest-tls-verify=false", f"docker-archive:{busybox_tar()}", dest)
    assert denied.returncode != 0 and "unauthorized" in denied.stderr.lower()
    r = skopeo("copy", "--dest-tls-verify=false", "--dest-creds", "alice:s3cret",
               f"docker-archive:{busybox_tar()}", dest)
    assert r.returncode == 0, r.stderr
    r = skopeo("copy", "--src-tls-verify=false", "--src-creds", "alice:s3cret", dest, f"oci:{tmp_path / 'o'}:x")
    assert r.returncode == 0, r.stderr
    r = skopeo("copy", "--src-tls-verify=false", "--src-creds", "alice:nope", dest, f"oci:{tmp_path / 'p'}:x")
    assert r.returncode != 0


# --- pull -------------------------------------------------------------------------------------------

def test_base_and_missing_content(registry: Registry) -> None:
    base = registry.request("GET", "/v2/")
    assert base.status == 200 and base.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    missing = sha256(b"nothing")
    r = registry.request("GET", f"/v2/a/blobs/{missing}")  # GET nonexistent blob -> 404
    assert r.status == 404 and r.code == "BLOB_UNKNOWN"
    assert registry.request("HEAD", f"/v2/a/blobs/{missing}").status == 404
    r = registry.request("GET", "/v2/a/manifests/nope")  # GET nonexistent manifest -> 404
    assert r.status == 404 and r.code == "MANIFEST_UNKNOWN"
    assert registry.request("HEAD", f"/v2/a/manifests/{missing}").status == 404
    r = registry.request("GET", "/v2/a/blobs/sha256:xyz")
    assert r.status == 400 and r.code == "DIGEST_INVALID"
    r = registry.request("GET", "/v2/Bad_Name/tags/list")
    assert r.status == 400 and r.code == "NAME_INVALID"
    r = registry.request("GET", "/v2/never/pushed/tags/list")
    assert r.status == 404 and r.code == "NAME_UNKNOWN"


def test_pull_manifest_by_tag_and_digest(registry: Registry) -> None:
    digest, body = registry.push_image("pull/me", "v1")
    for ref in ("v1", digest):
        got = registry.request("GET", f"/v2/pull/me/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
        assert got.status == 200 and got.body == body
        assert got.headers["Content-Type"] == OCI_MANIFEST
        assert got.headers["Docker-Content-Digest"] == digest
        head = registry.request("HEAD", f"/v2/pull/me/manifests/{ref}")
        assert head.status == 200 and head.body == b""
        assert head.headers["Content-Length"] == str(len(body))
        assert head.headers["Docker-Content-Digest"] == digest


def test_blob_head_get_and_ranges(registry: Registry) -> None:
    data = os.urandom(3000)
    digest = registry.push_blob("r/blob", data)
    head = registry.request("HEAD", f"/v2/r/blob/blobs/{digest}")
    assert head.status == 200 and head.body == b"" and head.headers["Content-Length"] == "3000"
    assert head.headers["Docker-Content-Digest"] == digest
    got = registry.request("GET", f"/v2/r/blob/blobs/{digest}")
    assert got.status == 200 and got.body == data
    cases = {"bytes=500-1499": data[500:1500], "bytes=500-": data[500:], "bytes=-500": data[-500:],
             "bytes=2000-5000": data[2000:]}
    for spec, want in cases.items():
        r = registry.request("GET", f"/v2/r/blob/blobs/{digest}", headers={"Range": spec})
        assert r.status == 206 and r.body == want, spec
        assert r.headers["Content-Range"].endswith("/3000")
    for spec in ("bytes=500-0", "bytes=5000-10000"):
        r = registry.request("GET", f"/v2/r/blob/blobs/{digest}", headers={"Range": spec})
        assert r.status == 416 and r.headers["Content-Range"] == "bytes */3000", spec
    # a blob pushed to another repository is not visible here
    assert registry.request("GET", f"/v2/elsewhere/blobs/{digest}").status == 404


# --- push -------------------------------------------------------------------------------------------

def test_monolithic_upload_verifies_digest(registry: Registry) -> None:
    data = b"hello registry"
    wrong = sha256(b"something else")
    r = registry.request("POST", f"/v2/m/blobs/uploads/?digest={wrong}", data)
    assert r.status == 400 and r.code == "DIGEST_INVALID"
    assert registry.request("HEAD", f"/v2/m/blobs/{wrong}").status == 404
    assert registry.request("HEAD", f"/v2/m/blobs/{sha256(data)}").status == 404
    # POST then PUT with the body: wrong digest refused, right digest 201 with Location
    post = registry.request("POST", "/v2/m/blobs/uploads/")
    assert post.status == 202 and post.headers["Location"] and post.headers["Docker-Upload-UUID"]
    loc = post.headers["Location"]
    r = registry.request("PUT", f"{loc}?digest={wrong}", data)
    assert r.status == 400 and r.code == "DIGEST_INVALID"
    assert registry.request("GET", loc).status == 404  # the session went with the bad digest
    post = registry.request("POST", "/v2/m/blobs/uploads/")
    r = registry.request("PUT", f"{post.headers['Location']}?digest={sha256(data)}", data)
    assert r.status == 201 and r.headers["Docker-Content-Digest"] == sha256(data)
    assert registry.request("GET", r.headers["Location"]).body == data
    empty = registry.push_blob("m", b"")  # the empty blob is a blob too
    assert registry.request("HEAD", f"/v2/m/blobs/{empty}").headers["Content-Length"] == "0"


def test_chunked_upload_order_checks(registry: Registry) -> None:
    data = os.urandom(10_000)
    chunks = [(0, data[:4000]), (4000, data[4000:8000]), (8000, data[8000:])]
    loc = registry.request("POST", "/v2/c/blobs/uploads/").headers["Location"]

    def patch(start: int, chunk: bytes) -> Reply:
        return registry.request("PATCH", loc, chunk, {"Content-Type": "application/octet-stream",
                                                      "Content-Range": f"{start}-{start + len(chunk) - 1}"})

    assert patch(*chunks[1]).status == 416  # out-of-order blob upload should return 416
    r = patch(*chunks[0])
    assert r.status == 202 and r.headers["Range"] == "0-3999"
    loc = r.headers["Location"]
    retry = patch(*chunks[0])  # retry previous blob chunk should return 416
    assert retry.status == 416 and retry.headers["Range"] == "0-3999"
    status = registry.request("GET", loc)  # stale upload: 204 with a range and location
    assert status.status == 204 and status.headers["Range"] == "0-3999" and status.headers["Location"]
    assert patch(*chunks[1]).status == 202
    # the last chunk travels with the PUT
    r = registry.request("PUT", f"{loc}?digest={sha256(data)}", chunks[2][1],
                         {"Content-Range": f"8000-{len(data) - 1}"})
    assert r.status == 201, r
    assert registry.request("GET", f"/v2/c/blobs/{sha256(data)}").body == data


def test_streamed_upload_and_cancel(registry: Registry) -> None:
    data = os.urandom(200_000)
    loc = registry.request("POST", "/v2/s/blobs/uploads/").headers["Location"]
    r = registry.request("PATCH", loc, data, {"Content-Type": "application/octet-stream"})
    assert r.status == 202 and r.headers["Range"] == f"0-{len(data) - 1}"
    assert registry.request("PUT", f"{loc}?digest={sha256(data)}").status == 201
    loc = registry.request("POST", "/v2/s/blobs/uploads/").headers["Location"]
    assert registry.request("DELETE", loc).status == 204
    r = registry.request("GET", loc)
    assert r.status == 404 and r.code == "BLOB_UPLOAD_UNKNOWN"
    assert registry.request("PUT", f"{loc}?digest={sha256(data)}").status == 404


def test_sha512_blob(registry: Registry) -> None:
    data = os.urandom(5000)
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    loc = registry.request("POST", "/v2/x512/blobs/uploads/").headers["Location"]
    assert registry.request("PATCH", loc, data).status == 202
    r = registry.request("PUT", f"{registry.request('GET', loc).headers['Location']}?digest={digest}")
    assert r.status == 201, r
    got = registry.request("GET", f"/v2/x512/blobs/{digest}")
    assert got.body == data and got.headers["Docker-Content-Digest"] == digest
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": EMPTY_CONFIG, "digest": registry.push_blob("x512", b"{}"), "size": 2},
                "layers": [{"mediaType": "application/octet-stream", "digest": digest, "size": len(data)}]}
    body = json.dumps(manifest).encode()
    mdigest = "sha512:" + hashlib.sha512(body).hexdigest()
    assert registry.push_manifest("x512", mdigest, manifest).status == 201
    assert registry.request("GET", f"/v2/x512/manifests/{mdigest}").body == body


def test_cross_repository_mount(registry: Registry) -> None:
    digest = registry.push_blob("src/repo", b"shared layer")
    r = registry.request("POST", f"/v2/dst/repo/blobs/uploads/?mount={digest}&from=src/repo")
    assert r.status == 201 and r.headers["Location"] == f"/v2/dst/repo/blobs/{digest}"
    assert registry.request("GET", f"/v2/dst/repo/blobs/{digest}").body == b"shared layer"
    missing = sha256(b"not there")
    r = registry.request("POST", f"/v2/dst/repo/blobs/uploads/?mount={missing}&from=src/repo")
    assert r.status == 202 and "/blobs/uploads/" in r.headers["Location"]  # falls back to a session
    r = registry.request("POST", f"/v2/dst/other/blobs/uploads/?mount={digest}")  # no `from`
    assert r.status == 202
    r = registry.request("POST", f"/v2/dst/other/blobs/uploads/?mount={digest}&from=../../src/repo")
    assert r.status == 400 and r.code == "NAME_INVALID"


def test_manifest_push_rules(registry: Registry) -> None:
    cfg = registry.push_blob("mp", b"{}")
    missing = sha256(b"missing layer")
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": EMPTY_CONFIG, "digest": cfg, "size": 2},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": missing,
                            "size": 13}]}
    r = registry.push_manifest("mp", "v1", manifest)
    assert r.status == 400 and r.code == "MANIFEST_BLOB_UNKNOWN"
    manifest["layers"] = []  # a manifest with no layers is fine
    body = json.dumps(manifest).encode()
    r = registry.push_manifest("mp", "v1", manifest)
    assert r.status == 201 and r.headers["Docker-Content-Digest"] == sha256(body)
    # by digest, with extra tags in the query (distribution-spec 1.1.1)
    r = registry.request("PUT", f"/v2/mp/manifests/{sha256(body)}?tag=t1&tag=t2", body, {"Content-Type": OCI_MANIFEST})
    assert r.status == 201 and registry.request("GET", "/v2/mp/tags/list").json()["tags"] == ["t1", "t2", "v1"]
    r = registry.request("PUT", f"/v2/mp/manifests/{sha256(b'other')}", body, {"Content-Type": OCI_MANIFEST})
    assert r.status == 400 and r.code == "DIGEST_INVALID"
    r = registry.request("PUT", "/v2/mp/manifests/v2", b"{not json", {"Content-Type": OCI_MANIFEST})
    assert r.status == 400 and r.code == "MANIFEST_INVALID"
    big = dict(manifest, annotations={"pad": "x" * (4 * 1024 * 1024)})
    assert registry.push_manifest("mp", "big", big).status == 413
    r = registry.push_manifest("mp", "bad", dict(manifest, config={"digest": "sha256:abc", "size": 1}))
    assert r.status == 400 and r.code == "MANIFEST_INVALID"
    r = registry.push_manifest("mp", "-bad-tag", manifest)
    assert r.status == 400
    # an index needs its manifests present in the repository
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX,
             "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(b"no manifest"), "size": 2}]}
    r = registry.push_manifest("mp", "idx", index, OCI_INDEX)
    assert r.status == 400 and r.code == "MANIFEST_BLOB_UNKNOWN"
    index["manifests"] = [{"mediaType": OCI_MANIFEST, "digest": sha256(body), "size": len(body)}]
    r = registry.push_manifest("mp", "idx", index, OCI_INDEX)
    assert r.status == 201
    got = registry.request("GET", "/v2/mp/manifests/idx")
    assert got.headers["Content-Type"] == OCI_INDEX


# --- content discovery ------------------------------------------------------------------------------

def test_tags_list_pagination(registry: Registry) -> None:
    digest, _ = registry.push_image("t/list", "a")
    tags = ["a", "b", "c", "d", "e"]
    for tag in tags[1:]:
        r = registry.request("PUT", f"/v2/t/list/manifests/{tag}",
                             registry.request("GET", f"/v2/t/list/manifests/{digest}").body,
                             {"Content-Type": OCI_MANIFEST})
        assert r.status == 201
    assert registry.request("GET", "/v2/t/list/tags/list").json() == {"name": "t/list", "tags": tags}
    r = registry.request("GET", "/v2/t/list/tags/list?n=2")
    assert r.json()["tags"] == ["a", "b"]
    assert r.headers["Link"] == '</v2/t/list/tags/list?last=b&n=2>; rel="next"'
    r = registry.request("GET", "/v2/t/list/tags/list?n=2&last=b")
    assert r.json()["tags"] == ["c", "d"]
    r = registry.request("GET", "/v2/t/list/tags/list?n=2&last=d")
    assert r.json()["tags"] == ["e"] and "Link" not in r.headers
    assert registry.request("GET", "/v2/t/list/tags/list?n=x").status == 400


def test_catalog_pagination(registry: Registry) -> None:
    for name in ("cat/a", "cat/b", "cat/c"):
        registry.push_blob(name, b"x")
    r = registry.request("GET", "/v2/_catalog?n=2")
    assert r.json() == {"repositories": ["cat/a", "cat/b"]} and 'rel="next"' in r.headers["Link"]
    assert registry.request("GET", "/v2/_catalog?last=cat/b").json() == {"repositories": ["cat/c"]}


def test_referrers(registry: Registry) -> None:
    subject, subject_body = registry.push_image("ref/app", "v1")
    missing = sha256(b"no such manifest")
    r = registry.request("GET", f"/v2/ref/app/referrers/{missing}")  # nonexistent: empty 200
    assert r.status == 200 and r.headers["Content-Type"] == OCI_INDEX
    assert r.json() == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    desc = {"mediaType": OCI_MANIFEST, "digest": subject, "size": len(subject_body)}
    sig, _ = registry.push_image("ref/app", "sig", b"signature", artifactType="application/vnd.example.sig",
                                 subject=desc, annotations={"org.example": "1"})
    sbom_cfg = registry.push_blob("ref/app", b'{"sbom":1}')
    sbom = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.example.sbom", "digest": sbom_cfg, "size": 10},
            "layers": [], "subject": desc}
    r = registry.push_manifest("ref/app", sha256(json.dumps(sbom).encode()), sbom)
    assert r.status == 201 and r.headers["OCI-Subject"] == subject
    found = registry.request("GET", f"/v2/ref/app/referrers/{subject}").json()["manifests"]
    assert {d["artifactType"] for d in found} == {"application/vnd.example.sig", "application/vnd.example.sbom"}
    sig_desc = next(d for d in found if d["digest"] == sig)
    assert sig_desc["annotations"] == {"org.example": "1"} and sig_desc["mediaType"] == OCI_MANIFEST
    r = registry.request("GET", f"/v2/ref/app/referrers/{subject}?artifactType=application/vnd.example.sbom")
    assert [d["artifactType"] for d in r.json()["manifests"]] == ["application/vnd.example.sbom"]
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    # a subject that does not exist is accepted (the referrer may be pushed first)
    r = registry.push_image("ref/app", "orphan", b"o", subject=dict(desc, digest=missing))
    assert registry.request("GET", f"/v2/ref/app/referrers/{missing}").json()["manifests"][0]["digest"] == r[0]
    # deleting the referrer removes it from the list
    assert registry.request("DELETE", f"/v2/ref/app/manifests/{sig}").status == 202
    found = registry.request("GET", f"/v2/ref/app/referrers/{subject}").json()["manifests"]
    assert [d["artifactType"] for d in found] == ["application/vnd.example.sbom"]


# --- content management -----------------------------------------------------------------------------

def test_deletes(registry: Registry) -> None:
    digest, _ = registry.push_image("del/me", "v1")
    registry.request("PUT", "/v2/del/me/manifests/v2", registry.request("GET", "/v2/del/me/manifests/v1").body,
                     {"Content-Type": OCI_MANIFEST})
    assert registry.request("DELETE", "/v2/del/me/manifests/v2").status == 202  # tag delete
    assert registry.request("GET", "/v2/del/me/tags/list").json()["tags"] == ["v1"]
    assert registry.request("DELETE", f"/v2/del/me/manifests/{digest}").status == 202
    r = registry.request("GET", f"/v2/del/me/manifests/{digest}")
    assert r.status == 404 and r.code == "MANIFEST_UNKNOWN"
    assert registry.request("GET", "/v2/del/me/manifests/v1").status == 404
    assert registry.request("GET", "/v2/del/me/tags/list").json()["tags"] == []
    assert registry.request("DELETE", f"/v2/del/me/manifests/{digest}").status == 404
    layer = sha256(b"layer")
    assert registry.request("DELETE", f"/v2/del/me/blobs/{layer}").status == 202
    assert registry.request("GET", f"/v2/del/me/blobs/{layer}").status == 404
    r = registry.request("DELETE", f"/v2/del/me/blobs/{layer}")
    assert r.status == 404 and r.code == "BLOB_UNKNOWN"


def test_deletes_disabled_by_default(make_registry: Callable[..., Registry]) -> None:
    reg = make_registry()
    digest, _ = reg.push_image("keep/me", "v1")
    for path in (f"/v2/keep/me/manifests/{digest}", "/v2/keep/me/manifests/v1", f"/v2/keep/me/blobs/{sha256(b'layer')}"):
        r = reg.request("DELETE", path)
        assert r.status == 405 and r.code == "UNSUPPORTED"
    assert reg.request("GET", "/v2/keep/me/manifests/v1").status == 200


def test_offline_gc(registry: Registry) -> None:
    keep, _ = registry.push_image("gc/keep", "v1", b"kept layer")
    gone, _ = registry.push_image("gc/gone", "v1", b"doomed layer")
    registry.request("DELETE", f"/v2/gc/gone/manifests/{gone}")
    registry.stop()
    out = subprocess.run([sys.executable, "-m", "berth.registry.server", "gc", "--root", registry.root],
                         capture_output=True, text=True, check=True).stdout
    assert f"removed {sha256(b'doomed layer')}" in out and f"removed {gone}" in out
    assert sha256(b"kept layer") not in out and keep not in out
    registry.start()
    assert registry.request("GET", f"/v2/gc/keep/blobs/{sha256(b'kept layer')}").status == 200
    assert registry.request("GET", f"/v2/gc/gone/blobs/{sha256(b'doomed layer')}").status == 404
    assert registry.request("GET", "/v2/gc/keep/manifests/v1").status == 200


def test_upload_survives_a_killed_server(registry: Registry) -> None:
    data = os.urandom(300_000)
    loc = registry.request("POST", "/v2/k/blobs/uploads/").headers["Location"]
    assert registry.request("PATCH", loc, data[:100_000], {"Content-Range": "0-99999"}).status == 202
    registry.stop(signal.SIGKILL)
    registry.start()
    status = registry.request("GET", loc)
    assert status.status == 204 and status.headers["Range"] == "0-99999"
    assert registry.request("PATCH", loc, data[100_000:], {"Content-Range": f"100000-{len(data) - 1}"}).status == 202
    assert registry.request("PUT", f"{loc}?digest={sha256(data)}").status == 201
    assert registry.request("GET", f"/v2/k/blobs/{sha256(data)}").body == data
    assert os.listdir(os.path.join(registry.root, "_uploads")) == []


def test_online_gc_spares_recent_blobs(registry: Registry) -> None:
    """`gc --online` while the registry serves: old garbage goes; a blob just uploaded (a push in
    flight, no manifest yet) and everything referenced stay, and the push can still finish."""
    keep, _ = registry.push_image("ogc/keep", "v1", b"kept layer")
    old_garbage = registry.push_blob("ogc/junk", b"old garbage")
    in_flight = registry.push_blob("ogc/new", b"uploaded, manifest not yet pushed")
    hour_ago = time.time() - 3600
    for p in Path(registry.root).rglob(old_garbage.split(":")[1]):
        os.utime(p, (hour_ago, hour_ago))
    out = subprocess.run([sys.executable, "-m", "berth.registry.server", "gc", "--root", registry.root, "--online",
                          "--grace", "600"], capture_output=True, text=True, check=True).stdout
    assert f"removed {old_garbage}" in out and in_flight not in out and keep not in out, out
    assert registry.request("GET", f"/v2/ogc/junk/blobs/{old_garbage}").status == 404
    assert registry.request("GET", f"/v2/ogc/keep/blobs/{sha256(b'kept layer')}").status == 200
    cfg = registry.push_blob("ogc/new", b"{}")
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": EMPTY_CONFIG, "digest": cfg, "size": 2},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": in_flight,
                            "size": len(b"uploaded, manifest not yet pushed")}]}
    assert registry.push_manifest("ogc/new", "v1", manifest).status == 201
