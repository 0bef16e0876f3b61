"""Bad input gets Docker's status and message, and changes nothing."""

from __future__ import annotations

import io
import json
import tarfile
import uuid

from ..conftest import Daemon


def _state(d: Daemon) -> tuple[list, list]:
    return d.json("GET", "/containers/json?all=1"), d.json("GET", "/images/json")  # type: ignore[return-value]


def test_unknown_image(berthd: Daemon) -> None:
    before = _state(berthd)
    status, out = berthd.request("POST", "/containers/create", {"Image": "nosuch:tag"})
    assert status == 404 and json.loads(out) == {"message": "No such image: nosuch:tag"}
    status, out = berthd.request("GET", "/images/nosuch/json")
    assert status == 404 and "No such image" in json.loads(out)["message"]
    assert _state(berthd) == before


def test_unknown_container(berthd: Daemon) -> None:
    for method, path in (("GET", "/containers/nosuch/json"), ("POST", "/containers/nosuch/start"),
                         ("DELETE", "/containers/nosuch"), ("POST", "/containers/nosuch/wait")):
        status, out = berthd.request(method, path)
        assert status == 404, (method, path, out)
        assert json.loads(out)["message"] == "No such container: nosuch"


def test_duplicate_name(berthd: Daemon) -> None:
    name = f"dup-{uuid.uuid4().hex[:6]}"
    cid = berthd.json("POST", f"/containers/create?name={name}", {"Image": "busybox", "Cmd": ["true"]})["Id"]  # type: ignore[index]
    try:
        before = _state(berthd)
        status, out = berthd.request("POST", f"/containers/create?name={name}", {"Image": "busybox"})
        assert status == 409 and f'The container name "/{name}" is already in use' in json.loads(out)["message"]
        assert _state(berthd) == before
    finally:
        berthd.request("DELETE", f"/containers/{cid}")


def test_malformed_json(berthd: Daemon) -> None:
    before = _state(berthd)
    status, out = berthd.request("POST", "/containers/create", b'{"Image": "busybox",',
                                 {"Content-Type": "application/json"})
    assert status == 400 and json.loads(out)["message"].startswith("invalid JSON")
    status, out = berthd.request("GET", '/containers/json?filters={"status":')
    assert status == 400
    assert _state(berthd) == before


def test_remove_running_without_force(berthd: Daemon) -> None:
    cid = berthd.json("POST", "/containers/create", {"Image": "busybox", "Cmd": ["sleep", "100"]})["Id"]  # type: ignore[index]
    berthd.request("POST", f"/containers/{cid}/start")
    try:
        status, out = berthd.request("DELETE", f"/containers/{cid}")
        assert status == 409 and "You cannot remove a running container" in json.loads(out)["message"]
        assert berthd.json("GET", f"/containers/{cid}/json")["State"]["Running"] is True  # type: ignore[index]
    finally:
        berthd.request("DELETE", f"/containers/{cid}?force=1")


def test_api_version_and_unknown_route(berthd: Daemon) -> None:
    status, out = berthd.request("GET", "/v9.99/version")
    assert status == 400 and "is too new" in json.loads(out)["message"]
    status, _ = berthd.request("GET", "/v1.41/nosuchroute")
    assert status == 404
    status, _ = berthd.request("GET", "/v1.41/version")
    assert status == 200


def _archive_with_layer(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as t:
        for info, data in members:
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    layer_bytes = layer.getvalue()
    import hashlib

    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": ["evil:latest"],
                            "Layers": ["layer/layer.tar"]}]).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as t:
        for name, data in ((config_name, config), ("layer/layer.tar", layer_bytes), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _symlink(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info, None


def test_load_refuses_escaping_layers(berthd: Daemon) -> None:
    before = _state(berthd)
    cases = [
        [_file("../../escaped")],
        [_symlink("evil", "../../../../etc"), _file("evil/passwd")],
        [_symlink("evil", "/etc"), _file("evil/passwd")],
    ]
    for members in cases:
        status, out = berthd.request("POST", "/images/load", _archive_with_layer(members),
                                     {"Content-Type": "application/x-tar"})
        body = out.decode()
        # the error arrives as the stream's first (and only) message, or as the response itself
        assert status == 400 or "errorDetail" in body, (status, body)
        assert "evil" in body or "escaped" in body or ".." in body, body
    assert _state(berthd) == before
    status, _ = berthd.request("GET", "/images/evil:latest/json")
    assert status == 404


def test_crun_refused_with_reason_on_hybrid_cgroups(berthd: Daemon) -> None:
    import os

    status, out = berthd.request("POST", "/containers/create",
                                 {"Image": "busybox", "HostConfig": {"Runtime": "crun"}})
    hybrid = os.path.ismount("/sys/fs/cgroup/unified") and os.path.ismount("/sys/fs/cgroup/memory")
    if hybrid:
        assert status == 400 and "hybrid cgroup" in json.loads(out)["message"]
    else:
        assert status == 201
        berthd.request("DELETE", f"/containers/{json.loads(out)['Id']}")
    status, out = berthd.request("POST", "/containers/create",
                                 {"Image": "busybox", "HostConfig": {"Runtime": "nosuch"}})
    assert status == 400 and "unknown or invalid runtime name: nosuch" in json.loads(out)["message"]
