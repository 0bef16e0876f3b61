"""`berth compose` against a real berthd: depends_on conditions (service_healthy,
service_completed_successfully) as docker compose enforces them, `events`, `push`, `watch`, and
the 10-service project of bench/compose_bench.py."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from berth.client.api import APIClient
from tests.api.test_compose import _compose, _ids
from tests.api.test_registry_server import Registry, make_registry  # noqa: F401  (fixture)
from tests.conftest import REPO, Daemon

BENCH = REPO / "bench" / "compose_bench.py"


def _project(tmp_path: Path, tag: str, compose: str) -> Path:
    root = tmp_path / f"{tag}{os.getpid()}"
    root.mkdir()
    (root / "compose.yaml").write_text(compose)
    return root


def _clean(berthd: Daemon, root: Path) -> None:
    _compose(berthd.host, root, "down", "-v", "--remove-orphans", check=False)
    assert _ids(APIClient(berthd.host), root.name) == {}


HEALTH = """
services:
  store:
    image: busybox
    command: sh -c 'sleep 1; touch /ready; exec sleep 1000'
    stop_signal: SIGKILL
    healthcheck: {test: [CMD, test, -f, /ready], interval: 200ms, retries: 30}
  bad:
    image: busybox
    command: [sleep, "1000"]
    stop_signal: SIGKILL
    healthcheck: {test: [CMD, "false"], interval: 100ms, retries: 2}
  plain:
    image: busybox
    command: [sleep, "1000"]
    stop_signal: SIGKILL
  app:
    image: busybox
    command: [sleep, "1000"]
    stop_signal: SIGKILL
    depends_on: {store: {condition: service_healthy}}
  doomed:
    image: busybox
    command: [sleep, "1000"]
    depends_on: {bad: {condition: service_healthy}}
  orphaned:
    image: busybox
    command: [sleep, "1000"]
    depends_on: {plain: {condition: service_healthy}}
  slow:
    image: busybox
    command: [sleep, "1000"]
    stop_signal: SIGKILL
    healthcheck: {test: [CMD, "true"], interval: 1h}
  patient:
    image: busybox
    command: [sleep, "1000"]
    depends_on: {slow: {condition: service_healthy}}
"""


def test_service_healthy(berthd: Daemon, tmp_path: Path) -> None:
    root = _project(tmp_path, "bchealth", HEALTH)
    api = APIClient(berthd.host)
    try:
        # As docker compose: a dependency without a health check cannot be waited for.
        proc = _compose(berthd.host, root, "up", "-d", "orphaned", check=False)
        assert proc.returncode == 1
        assert f"container {root.name}-plain-1 has no healthcheck configured" in proc.stderr, proc.stderr
        assert f"{root.name}-orphaned-1" not in _ids(api, root.name)

        _compose(berthd.host, root, "up", "-d", "app")
        ids = _ids(api, root.name)
        store = api.containers.inspect(ids[f"{root.name}-store-1"])
        app = api.containers.inspect(ids[f"{root.name}-app-1"])
        assert store["State"]["Health"]["Status"] == "healthy"
        # The app was started only after the store's check passed (it needs a second to).
        assert app["State"]["StartedAt"] > store["State"]["StartedAt"]
        ready = [e for e in store["State"]["Health"].get("Log") or [] if e.get("ExitCode") == 0]
        if ready and ready[0].get("End"):
            assert app["State"]["StartedAt"] >= ready[0]["End"][:26]

        proc = _compose(berthd.host, root, "up", "-d", "doomed", check=False)
        assert proc.returncode == 1 and f"container {root.name}-bad-1 is unhealthy" in proc.stderr, proc.stderr
        assert f"{root.name}-doomed-1" not in _ids(api, root.name)

        # Still "starting" an hour before its first check: the wait gives up at --wait-timeout.
        began = time.monotonic()
        proc = _compose(berthd.host, root, "up", "-d", "--wait-timeout", "1", "patient", check=False)
        assert proc.returncode == 1, proc.stderr
        assert f"timed out waiting for {root.name}-slow-1 to become healthy" in proc.stderr, proc.stderr
        assert time.monotonic() - began < 20
    finally:
        _clean(berthd, root)


COMPLETED = """
services:
  migrate:
    image: busybox
    command: sh -c 'sleep 0.5; exit ${CODE:-0}'
  web:
    image: busybox
    command: [sleep, "1000"]
    stop_signal: SIGKILL
    volumes: [/cache]
    depends_on: {migrate: {condition: service_completed_successfully}}
"""


def test_service_completed_successfully(berthd: Daemon, tmp_path: Path) -> None:
    root = _project(tmp_path, "bcdone", COMPLETED)
    api = APIClient(berthd.host)
    try:
        proc = _compose(berthd.host, root, "up", "-d", env={"CODE": "3"}, check=False)
        assert proc.returncode == 1
        assert "service 'migrate' didn't complete successfully: exit 3" in proc.stderr, proc.stderr
        assert f"{root.name}-web-1" not in _ids(api, root.name)

        _compose(berthd.host, root, "up", "-d")
        ids = _ids(api, root.name)
        migrate = api.containers.inspect(ids[f"{root.name}-migrate-1"])
        web = api.containers.inspect(ids[f"{root.name}-web-1"])
        assert migrate["State"]["ExitCode"] == 0 and web["State"]["Running"]
        assert web["State"]["StartedAt"] >= migrate["State"]["FinishedAt"]

        # A recreated container gets its predecessor's anonymous volume back, as in docker compose.
        _compose(berthd.host, root, "exec", "web", "sh", "-c", "echo warm > /cache/state")
        _compose(berthd.host, root, "up", "-d", "--force-recreate", "--no-deps", "web")
        assert _ids(api, root.name)[f"{root.name}-web-1"] != ids[f"{root.name}-web-1"]
        assert _compose(berthd.host, root, "exec", "web", "cat", "/cache/state").stdout == "warm\n"
    finally:
        _clean(berthd, root)


EVENTS = """
services:
  talk: {image: busybox, command: [sleep, "1000"], stop_signal: SIGKILL}
  quiet: {image: busybox, command: [sleep, "1000"], stop_signal: SIGKILL}
"""


def test_events(berthd: Daemon, tmp_path: Path) -> None:
    root = _project(tmp_path, "bcevents", EVENTS)
    try:
        since = int(time.time()) - 1
        _compose(berthd.host, root, "up", "-d")
        _compose(berthd.host, root, "restart", "talk")
        until = str(int(time.time()) + 1)
        out = _compose(berthd.host, root, "events", "--json", "--since", str(since), "--until", until, "talk").stdout
        events = [json.loads(line) for line in out.splitlines()]
        assert {e["service"] for e in events} == {"talk"}
        actions = [e["action"] for e in events]
        assert actions[:2] == ["create", "start"] and "restart" in actions, actions
        assert events[0]["attributes"]["name"] == f"{root.name}-talk-1"
        assert not any(k.startswith("com.docker.compose.") for e in events for k in e["attributes"])
        text = _compose(berthd.host, root, "events", "--since", str(since), "--until", until).stdout
        assert any(f" container start {events[1]['id']} (" in line and f"name={root.name}-talk-1" in line
                   for line in text.splitlines()), text
        assert "-quiet-1" in text  # no service named: all of the project's
    finally:
        _clean(berthd, root)


def test_failed_build_creates_nothing(berthd: Daemon, tmp_path: Path) -> None:
    """As docker compose: images are pulled or built before networks and volumes are made, so a
    build that fails leaves nothing of the project behind."""
    root = _project(tmp_path, "bcfail", """
services:
  ok: {image: busybox, command: [sleep, "1000"], volumes: [data:/data]}
  broken: {build: ./broken}
volumes: {data: {}}
""")
    (root / "broken").mkdir()
    (root / "broken" / "Dockerfile").write_text("FROM busybox\nRUN exit 3\n")
    try:
        out = _compose(berthd.host, root, "up", "-d", check=False)
        assert out.returncode != 0, out
        client = APIClient(berthd.host)
        label = f"com.docker.compose.project={root.name}"
        assert client.networks.list(filters={"label": [label]}) == []
        assert client.volumes.list(filters={"label": [label]})["Volumes"] in (None, [])
        assert _ids(client, root.name) == {}
    finally:
        _clean(berthd, root)


def test_push(berthd: Daemon, tmp_path: Path, make_registry: Callable[..., Registry]) -> None:  # noqa: F811
    reg = make_registry()
    host = reg.host
    root = _project(tmp_path, "bcpush", f"""
services:
  app:
    build: {{context: ./app, tags: ["{host}/team/app:extra"]}}
    image: {host}/team/app:1
  base:
    image: busybox
""")
    (root / "app").mkdir()
    (root / "app" / "Dockerfile").write_text("FROM busybox\nRUN echo built > /built\n")
    try:
        _compose(berthd.host, root, "build")
        _compose(berthd.host, root, "push")
        tags = reg.request("GET", "/v2/team/app/tags/list")
        assert tags.status == 200 and sorted(json.loads(tags.body)["tags"]) == ["1", "extra"]
        # Only built services with an image name are pushed: busybox is not.
        assert reg.request("GET", "/v2/library/busybox/tags/list").status == 404
    finally:
        _compose(berthd.host, root, "down", check=False)
        for tag in ("1", "extra"):  # not `down --rmi all`: that would take busybox from the other tests
            berthd.request("DELETE", f"/images/{host}/team/app:{tag}")


def test_ten_service_project(berthd: Daemon, tmp_path: Path) -> None:
    """The bench's project, timing-free: every service up and listed, networks and volume made,
    nothing left after down -v."""
    spec = importlib.util.spec_from_file_location("compose_bench", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    root = tmp_path / f"bcten{os.getpid()}"
    root.mkdir()
    bench.write_project(root, 10)
    api = APIClient(berthd.host)
    try:
        _compose(berthd.host, root, "up", "-d")
        ids = _ids(api, root.name)
        assert set(ids) == {f"{root.name}-app{i}-1" for i in range(10)}
        assert all(api.containers.inspect(cid)["State"]["Running"] for cid in ids.values())
        both = api.containers.inspect(ids[f"{root.name}-app2-1"])["NetworkSettings"]["Networks"]
        assert set(both) == {f"{root.name}_front", f"{root.name}_back"}
        rows = _compose(berthd.host, root, "ps").stdout.splitlines()
        assert len(rows) == 11 and rows[0].split()[:2] == ["NAME", "IMAGE"]
        assert all(" busybox:latest " in row for row in rows[1:]), rows
        assert _compose(berthd.host, root, "up", "-d").stderr.count("Running") == 10  # nothing recreated
        assert _ids(api, root.name) == ids
    finally:
        _clean(berthd, root)
    assert not api.networks.list(filters={"label": [f"com.docker.compose.project={root.name}"]})
    assert not (api.volumes.list(filters={"label": [f"com.docker.compose.project={root.name}"]}).get("Volumes") or [])


WATCH = """
services:
  web:
    image: busybox
    command: [sleep, "1000"]
    stop_signal: SIGKILL
    develop:
      watch:
        - {path: ./src, action: sync, target: /app, ignore: ["*.tmp"]}
  built:
    build: ./img
    stop_signal: SIGKILL
    develop:
      watch:
        - {path: ./img, action: rebuild}
"""


def test_watch_syncs_and_rebuilds(berthd: Daemon, tmp_path: Path) -> None:
    root = _project(tmp_path, "bcwatch", WATCH)
    (root / "src").mkdir()
    (root / "src" / "a.txt").write_text("v1\n")
    (root / "img").mkdir()
    (root / "img" / "Dockerfile").write_text('FROM busybox\nCOPY version /version\nCMD ["sleep", "1000"]\n')
    (root / "img" / "version").write_text("one\n")
    log = tmp_path / "watch.log"
    with log.open("w") as out:
        watcher = subprocess.Popen(
            [sys.executable, "-m", "berth.cli.main", "-H", berthd.host, "compose", "-p", root.name,
             "--project-directory", str(root), "watch"], stdout=out, stderr=subprocess.STDOUT)

    def in_web(*cmd: str) -> str:
        return _compose(berthd.host, root, "exec", "web", *cmd, check=False).stdout

    def eventually(check: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 20
        while not check():
            assert watcher.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "watch did not act in time"
            time.sleep(0.2)

    try:
        eventually(lambda: "Watch enabled" in log.read_text())  # after `up` and the first snapshot
        (root / "src" / "a.txt").write_text("v2\n")
        (root / "src" / "sub").mkdir()
        (root / "src" / "sub" / "b.txt").write_text("new\n")
        (root / "src" / "scratch.tmp").write_text("ignored\n")
        eventually(lambda: in_web("cat", "/app/a.txt", "/app/sub/b.txt") == "v2\nnew\n")
        assert in_web("ls", "/app") == "a.txt\nsub\n"  # the ignored file stayed out
        (root / "src" / "sub" / "b.txt").unlink()
        eventually(lambda: in_web("ls", "/app/sub") == "")
        (root / "img" / "version").write_text("two\n")
        eventually(lambda: _compose(berthd.host, root, "exec", "built", "cat", "/version",
                                    check=False).stdout == "two\n")
    finally:
        watcher.send_signal(signal.SIGTERM)
        watcher.wait(timeout=30)
        _compose(berthd.host, root, "down", "--rmi", "local", check=False)
    out = log.read_text()
    assert watcher.returncode == 0, out
    assert "Syncing service 'web'" in out and "Rebuilding service(s) ['built']" in out, out
    assert "polling every" not in out, out  # woken by inotify (watchfiles), not by polling


def test_network_mode_service_shares_the_network_and_host_name(berthd: Daemon, tmp_path: Path) -> None:
    root = _project(tmp_path, "bcnetmode", """
services:
  a: {image: busybox, command: [sleep, "1000"], stop_signal: SIGKILL, hostname: ahost}
  b: {image: busybox, command: [sleep, "1000"], stop_signal: SIGKILL, network_mode: "service:a"}
""")
    try:
        _compose(berthd.host, root, "up", "-d")
        # As with dockerd: b lives in a's network namespace and so answers to a's host name.
        assert _compose(berthd.host, root, "exec", "b", "hostname").stdout == "ahost\n"
        a_ip = _compose(berthd.host, root, "exec", "a", "hostname", "-i").stdout.split()
        assert _compose(berthd.host, root, "exec", "b", "hostname", "-i").stdout.split() == a_ip
    finally:
        _clean(berthd, root)
