"""Pure parts of `ps`, `events` and `watch`: the quick project name agrees with the full loader,
events are filtered and printed as docker compose prints them, watch finds changes and rules."""

from __future__ import annotations

import json
import os
import tarfile
from io import BytesIO
from pathlib import Path

import pytest

from berth.compose.errors import ComposeError
from berth.compose.events import compose_event, format_event
from berth.compose.loader import LoadOptions, load_project
from berth.compose.naming import quick_project_name
from berth.compose.watch import Rule, changes, rules, snapshot, sync_tar


@pytest.mark.parametrize(("files", "environ", "name"), [
    ({"compose.yaml": "services: {web: {image: b}}\n"}, {}, "my_dirx"),
    ({"compose.yaml": "name: fromfile\nservices: {web: {image: b}}\n"}, {}, "fromfile"),
    ({"compose.yaml": "'name': ${N:-deflt}\nservices: {web: {image: b}}\n"}, {}, "deflt"),
    ({"compose.yaml": "{name: flow, services: {web: {image: b}}}\n"}, {}, "flow"),
    ({"compose.yaml": "services:\n  web: {image: b, container_name: xy, labels: {name: n}}\n"}, {}, "my_dirx"),  # not top-level
    ({"compose.yaml": "name: fromfile\nservices: {web: {image: b}}\n", ".env": "COMPOSE_PROJECT_NAME=dotenv\n"},
     {}, "dotenv"),
    ({"compose.yaml": "name: fromfile\nservices: {web: {image: b}}\n"}, {"COMPOSE_PROJECT_NAME": "env"}, "env"),
])
def test_quick_name_agrees_with_the_loader(tmp_path: Path, files: dict[str, str], environ: dict[str, str],
                                           name: str) -> None:
    root = tmp_path / "My_Dir.X"
    root.mkdir()
    for fname, text in files.items():
        (root / fname).write_text(text)
    full = load_project(LoadOptions(cwd=root, environ=environ)).name
    quick = quick_project_name((), None, None, (), environ, root)
    assert quick == full == name


def test_quick_name_looks_in_parent_directories_and_checks_p(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("services: {}\n")
    (tmp_path / "sub").mkdir()
    assert quick_project_name((), None, None, (), {}, tmp_path / "sub") == tmp_path.name.lower().replace(".", "")
    with pytest.raises(ComposeError, match="invalid project name"):
        quick_project_name((), "Bad Name", None, (), {}, tmp_path)


MSG = {"Type": "container", "Action": "start", "time": 1700000000, "timeNano": 1700000000123456000,
       "Actor": {"ID": "c1", "Attributes": {"name": "p-web-1", "image": "busybox",
                                             "com.docker.compose.service": "web",
                                             "com.docker.compose.project": "p"}}}


def test_events_filter_and_format() -> None:
    assert compose_event({**MSG, "Type": "network"}, set()) is None
    assert compose_event(MSG, {"db"}) is None
    ev = compose_event(MSG, {"web"})
    assert ev is not None and ev["attributes"] == {"name": "p-web-1", "image": "busybox"}
    line = json.loads(format_event(ev, as_json=True))
    assert line == {"time": "2023-11-14T22:13:20.123456Z", "type": "container", "service": "web", "id": "c1",
                    "action": "start", "attributes": {"name": "p-web-1", "image": "busybox"}}
    text = format_event(ev, as_json=False)
    assert text.endswith(" container start c1 (image=busybox, name=p-web-1)")


def test_watch_snapshot_changes_and_sync_tar(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("1")
    (tmp_path / "skip.tmp").write_text("x")
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules" / "m.js").write_text("x")
    rule = Rule("web", tmp_path, "sync", "/app/", ("*.tmp", "node_modules"))
    before = snapshot(rule)
    assert set(before) == {"a.txt"}
    (tmp_path / "a.txt").write_text("22")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b.txt").write_text("b")
    after = snapshot(rule)
    assert changes(before, after) == (["a.txt", "d/b.txt"], [])
    (tmp_path / "a.txt").unlink()
    assert changes(after, snapshot(rule)) == ([], ["a.txt"])
    with tarfile.open(fileobj=BytesIO(sync_tar(rule, ["d/b.txt"]))) as tar:
        assert tar.getnames() == ["app/d/b.txt"]


def test_watch_rules_need_targets_for_sync(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(
        "services:\n  web:\n    image: b\n    develop:\n      watch:\n        - {path: ./src, action: sync}\n")
    project = load_project(LoadOptions(cwd=tmp_path, environ={}))
    with pytest.raises(ComposeError, match=r"develop.watch\[0\]: a sync rule needs a target"):
        rules(project)
    (tmp_path / "compose.yaml").write_text(
        "services:\n  web:\n    image: b\n    develop:\n      watch:\n"
        "        - {path: ./src, action: sync+exec, target: /s, ignore: '*.o', exec: {command: make}}\n")
    [rule] = rules(load_project(LoadOptions(cwd=tmp_path, environ={})))
    assert rule == Rule("web", tmp_path / "src", "sync+exec", "/s", ("*.o",), ("make",))
    assert os.path.isabs(rule.path)


def test_validation_cache_remembers_only_valid_documents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from berth.compose import validate as stage

    monkeypatch.setattr(stage, "_VALID_CACHE", tmp_path)
    stage.validate({"services": {"web": {"image": "b"}}}, "f.yml")
    assert len(list(tmp_path.iterdir())) == 1
    stage.validate({"services": {"web": {"image": "b"}}}, "f.yml")  # a hit: nothing new
    assert len(list(tmp_path.iterdir())) == 1
    for _ in range(2):
        with pytest.raises(ComposeError, match="restart: must be a string"):
            stage.validate({"services": {"web": {"image": "b", "restart": 5}}}, "f.yml")
    assert len(list(tmp_path.iterdir())) == 1
    for i in range(6):
        stage._remember(tmp_path, f"k{i}", keep=4)
    assert len(list(tmp_path.iterdir())) <= 4


def test_recreate_reuses_anonymous_volumes_by_target() -> None:
    from berth.compose.executor import _reuse_volumes

    mounts = [{"Type": "volume", "Target": "/anon"}, {"Type": "volume", "Source": "p_data", "Target": "/data"},
              {"Type": "bind", "Source": "/h", "Target": "/now-a-bind"}]
    kept = [{"Type": "volume", "Source": "a" * 64, "Target": "/anon"},
            {"Type": "volume", "Source": "b" * 64, "Target": "/from-image"},
            {"Type": "volume", "Source": "c" * 64, "Target": "/now-a-bind"}]
    assert _reuse_volumes(mounts, kept) == [
        {"Type": "volume", "Target": "/anon", "Source": "a" * 64},
        {"Type": "volume", "Source": "p_data", "Target": "/data"},
        {"Type": "bind", "Source": "/h", "Target": "/now-a-bind"},
        {"Type": "volume", "Source": "b" * 64, "Target": "/from-image"}]


def test_oneshot_get_parses_plain_and_chunked_bodies(tmp_path: Path) -> None:
    import socket
    import threading

    from berth.client.errors import ClientError
    from berth.client.oneshot import Unsupported, _parse, get_json

    assert _parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]") == (200, {"content-length": "2"}, b"[]")
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[{}\r\n1\r\n]\r\n0\r\n\r\n"
    assert _parse(chunked)[2] == b"[{}]"
    with pytest.raises(Unsupported):
        get_json("tcp://127.0.0.1:2375", "/containers/json")

    path = str(tmp_path / "d.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(1)

    def answer() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        conn.sendall(b'HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n\r\n{"message": "no such thing"}')
        conn.close()

    t = threading.Thread(target=answer)
    t.start()
    with pytest.raises(ClientError) as err:
        get_json(f"unix://{path}", "/x")
    t.join()
    server.close()
    assert (err.value.status, err.value.message) == (404, "no such thing")
