"""Docker's token auth and the access policy on `berth registry serve`, driven by skopeo, by the
docker CLI through berthd, and by raw HTTP for the protocol details."""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Daemon, busybox_tar, docker_cli

from .test_distribution import make_image, registry_auth
from .test_docker_cli import docker
from .test_registry_server import Registry, make_registry, needs_skopeo, skopeo  # noqa: F401 - fixture

needs_docker = pytest.mark.skipif(docker_cli() is None, reason="the docker CLI is not installed")

POLICY = {"rules": [
    {"users": ["alice"], "repositories": ["team/**", "public/*"], "actions": ["pull", "push"]},
    {"users": ["*"], "repositories": ["team/**"], "actions": ["pull"]},
    {"users": ["anonymous"], "repositories": ["public/*"], "actions": ["pull"]},
    {"users": ["alice"], "repositories": [], "actions": ["catalog"]},
]}


def _auth_files(tmp_path: Path) -> list[str]:
    import bcrypt

    lines = [f"{u}:{bcrypt.hashpw(p, bcrypt.gensalt(4)).decode()}" for u, p in (("alice", b"a-pw"), ("bob", b"b-pw"))]
    (tmp_path / "htpasswd").write_text("\n".join(lines) + "\n")
    (tmp_path / "policy.json").write_text(json.dumps(POLICY))
    return ["--htpasswd", str(tmp_path / "htpasswd"), "--policy", str(tmp_path / "policy.json")]


@pytest.fixture
def token_registry(make_registry: Callable[..., Registry], tmp_path: Path) -> Registry:  # noqa: F811
    return make_registry(*_auth_files(tmp_path), "--token")


@pytest.fixture
def basic_registry(make_registry: Callable[..., Registry], tmp_path: Path) -> Registry:  # noqa: F811
    return make_registry(*_auth_files(tmp_path))


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def token(reg: Registry, user: str | None, password: str, *scopes: str) -> tuple[int, dict]:
    q = urllib.parse.urlencode([("service", "berth-registry"), *[("scope", s) for s in scopes]])
    r = reg.request("GET", f"/token?{q}", headers=_basic(user, password) if user else {})
    return r.status, r.json()


def claims(jwt: str) -> dict:
    body = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def test_token_flow_over_http(token_registry: Registry) -> None:
    reg = token_registry
    r = reg.request("GET", "/v2/")
    assert r.status == 401 and r.code == "UNAUTHORIZED"
    assert r.headers["WWW-Authenticate"] == (f'Bearer realm="http://{reg.host}/token",service="berth-registry"')
    r = reg.request("GET", "/v2/team/app/tags/list")
    assert 'scope="repository:team/app:pull"' in r.headers["WWW-Authenticate"]
    r = reg.request("POST", "/v2/team/app/blobs/uploads/")
    assert 'scope="repository:team/app:pull,push"' in r.headers["WWW-Authenticate"]

    status, body = token(reg, "alice", "wrong", "repository:team/app:pull,push")
    assert status == 401 and body["errors"][0]["code"] == "UNAUTHORIZED"
    # each scope is cut down to what the policy gives; nothing asked for outside it is granted
    status, body = token(reg, "bob", "b-pw", "repository:team/app:pull,push", "repository:alice/x:pull")
    assert status == 200 and body["token"] == body["access_token"] and body["expires_in"] > 0
    got = claims(body["token"])
    assert got["sub"] == "bob" and got["aud"] == "berth-registry"
    assert got["access"] == [{"type": "repository", "name": "team/app", "actions": ["pull"]}]
    bob = {"Authorization": f"Bearer {body['token']}"}
    assert reg.request("GET", "/v2/", headers=bob).status == 200
    r = reg.request("POST", "/v2/team/app/blobs/uploads/", headers=bob)
    assert r.status == 403 and r.code == "DENIED"  # the policy refuses bob any push

    status, body = token(reg, "alice", "a-pw", "repository:team/app:pull")
    alice = {"Authorization": f"Bearer {body['token']}"}
    r = reg.request("POST", "/v2/team/app/blobs/uploads/", headers=alice)
    # alice may push, her token just does not say so: a challenge for the wider scope
    assert r.status == 401 and 'error="insufficient_scope"' in r.headers["WWW-Authenticate"]
    status, body = token(reg, "alice", "a-pw", "repository:team/app:pull,push", "registry:catalog:*")
    alice = {"Authorization": f"Bearer {body['token']}"}
    assert reg.request("POST", "/v2/team/app/blobs/uploads/", headers=alice).status == 202
    assert reg.request("GET", "/v2/_catalog", headers=alice).status == 200

    forged = body["token"].rsplit(".", 1)[0] + "." + base64.urlsafe_b64encode(b"x" * 32).decode().rstrip("=")
    r = reg.request("GET", "/v2/", headers={"Authorization": f"Bearer {forged}"})
    assert r.status == 401 and 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    head = base64.urlsafe_b64encode(b'{"alg":"none"}').decode().rstrip("=")
    unsigned = head + "." + body["token"].split(".")[1] + "."
    assert reg.request("GET", "/v2/", headers={"Authorization": f"Bearer {unsigned}"}).status == 401

    # anonymous: a token with only what the policy gives everyone
    status, body = token(reg, None, "", "repository:public/x:pull,push", "repository:team/app:pull")
    assert status == 200 and claims(body["token"])["access"] == [
        {"type": "repository", "name": "public/x", "actions": ["pull"]}]


def test_basic_auth_with_policy(basic_registry: Registry) -> None:
    reg = basic_registry
    assert reg.request("GET", "/v2/").status == 401
    assert reg.request("GET", "/v2/", headers=_basic("bob", "wrong")).status == 401
    assert reg.request("GET", "/v2/", headers=_basic("bob", "b-pw")).status == 200
    r = reg.request("POST", "/v2/team/app/blobs/uploads/", headers=_basic("bob", "b-pw"))
    assert r.status == 403 and r.code == "DENIED"
    assert reg.request("POST", "/v2/team/app/blobs/uploads/", headers=_basic("alice", "a-pw")).status == 202
    assert reg.request("GET", "/v2/_catalog", headers=_basic("bob", "b-pw")).status == 403
    r = reg.request("GET", "/v2/public/x/tags/list")  # anonymous pull where the policy allows it
    assert r.status == 404 and r.code == "NAME_UNKNOWN"
    r = reg.request("GET", "/v2/team/app/tags/list")  # and a challenge where it does not
    assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Basic ")
    # a mount from a repository the user may not read falls back to an upload session
    data = b"secret layer"
    reg.auth = ("alice", "a-pw")
    digest = reg.push_blob("team/app", data)
    r = reg.request("POST", f"/v2/public/y/blobs/uploads/?mount={digest}&from=team/app", auth=False,
                    headers=_basic("alice", "a-pw"))
    assert r.status == 201


@needs_skopeo
@pytest.mark.parametrize("mode", ["token", "basic"])
def test_skopeo_with_policy(request: pytest.FixtureRequest, mode: str, tmp_path: Path) -> None:
    reg: Registry = request.getfixturevalue(f"{mode}_registry")
    src = f"docker-archive:{busybox_tar()}"
    dest = f"docker://{reg.host}/team/busybox:1"
    r = skopeo("copy", "--dest-tls-verify=false", "--dest-creds", "bob:b-pw", src, dest)
    assert r.returncode != 0 and "denied" in r.stderr.lower(), r.stderr
    r = skopeo("copy", "--dest-tls-verify=false", "--dest-creds", "alice:wrong", src, dest)
    assert r.returncode != 0 and "unauthorized" in r.stderr.lower(), r.stderr
    r = skopeo("copy", "--dest-tls-verify=false", "--dest-creds", "alice:a-pw", src, dest)
    assert r.returncode == 0, r.stderr
    r = skopeo("copy", "--src-tls-verify=false", "--src-creds", "bob:b-pw", dest, f"oci:{tmp_path / 'o'}:x")
    assert r.returncode == 0, r.stderr
    r = skopeo("copy", "--src-tls-verify=false", dest, f"oci:{tmp_path / 'p'}:x")  # anonymous: no
    assert r.returncode != 0
    pub = f"docker://{reg.host}/public/busybox:1"
    r = skopeo("copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--src-creds", "alice:a-pw",
               "--dest-creds", "alice:a-pw", dest, pub)
    assert r.returncode == 0, r.stderr
    r = skopeo("copy", "--src-tls-verify=false", pub, f"oci:{tmp_path / 'q'}:x")  # anonymous: yes
    assert r.returncode == 0, r.stderr


@needs_docker
def test_docker_cli_token_login_push_denied_pull(berthd: Daemon, token_registry: Registry, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    reg = token_registry.host
    ref = f"{reg}/team/tok:1"
    image_id = make_image(berthd, ref, 1 << 20)
    bad = docker(berthd, "login", "-u", "alice", "--password-stdin", reg, input=b"nope\n", check=False)
    assert bad.returncode != 0 and "unauthorized" in bad.stderr.lower(), bad.stderr
    assert "Login Succeeded" in docker(berthd, "login", "-u", "bob", "--password-stdin", reg,
                                       input=b"b-pw\n").stdout
    denied = docker(berthd, "push", ref, check=False)
    assert denied.returncode != 0 and "denied: requested access to the resource is denied" in denied.stderr, denied
    docker(berthd, "login", "-u", "alice", "--password-stdin", reg, input=b"a-pw\n")
    pushed = docker(berthd, "push", ref, timeout=120)
    assert "Pushed" in pushed.stdout, pushed.stdout
    docker(berthd, "rmi", ref)
    docker(berthd, "login", "-u", "bob", "--password-stdin", reg, input=b"b-pw\n")
    pulled = docker(berthd, "pull", ref, timeout=120)
    assert "Pull complete" in pulled.stdout, pulled.stdout
    assert docker(berthd, "inspect", "-f", "{{.Id}}", ref).stdout.strip() == image_id
    docker(berthd, "logout", reg)
    anon = docker(berthd, "pull", ref, check=False)
    assert anon.returncode != 0 and ("denied" in anon.stderr or "unauthorized" in anon.stderr), anon.stderr
    docker(berthd, "rmi", ref)
    wrong = {"X-Registry-Auth": registry_auth("bob", "nope", reg)}
    status, out = berthd.request("POST", f"/images/create?fromImage={reg}/team/tok&tag=1", headers=wrong)
    assert b"unauthorized: incorrect username or password" in out, out
