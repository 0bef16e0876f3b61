"""Health checks with the real docker CLI: --health-* flags, HEALTHCHECK in an image, State.Health,
ps STATUS and filters, health_status events, timeouts and output limits, and probes that stop
with the container and resume after a restart of it or of berthd (dockerd 20.10's behaviour)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from ..conftest import Daemon
from .test_docker_cli import DOCKER, docker

pytestmark = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")


def _health(d: Daemon, name: str) -> dict[str, Any]:
    return json.loads(docker(d, "inspect", "-f", "{{json .State.Health}}", name).stdout)  # type: ignore[no-any-return]


def _wait_status(d: Daemon, name: str, status: str, timeout: float = 10) -> dict[str, Any]:
    deadline = time.time() + timeout
    while True:
        health = _health(d, name)
        if health and health["Status"] == status:
            return health
        assert time.time() < deadline, f"{name} never became {status}: {health}"
        time.sleep(0.1)


@pytest.fixture
def name() -> str:
    return f"hc-{uuid.uuid4().hex[:8]}"


def test_unhealthy_then_healthy_events_ps_and_stop(berthd: Daemon, name: str) -> None:
    since = str(int(time.time()) - 1)
    docker(berthd, "run", "-d", "--name", name, "--health-cmd", "test -f /tmp/ok", "--health-interval", "200ms",
           "--health-retries", "2", "busybox", "sleep", "1000")
    try:
        status = docker(berthd, "ps", "--filter", f"name={name}", "--format", "{{.Status}}").stdout
        assert status.endswith("(health: starting)\n"), status
        assert name in docker(berthd, "ps", "--filter", "health=starting", "--format", "{{.Names}}").stdout

        health = _wait_status(berthd, name, "unhealthy")
        assert health["FailingStreak"] >= 2 and health["Log"][-1]["ExitCode"] == 1
        assert docker(berthd, "ps", "--filter", f"name={name}", "--format", "{{.Status}}").stdout.endswith(
            "(unhealthy)\n")
        assert name in docker(berthd, "ps", "--filter", "health=unhealthy", "--format", "{{.Names}}").stdout
        assert name not in docker(berthd, "ps", "--filter", "health=healthy", "--format", "{{.Names}}").stdout

        docker(berthd, "exec", name, "touch", "/tmp/ok")
        health = _wait_status(berthd, name, "healthy")
        assert health["FailingStreak"] == 0 and health["Log"][-1]["ExitCode"] == 0
        assert 1 <= len(health["Log"]) <= 5
        assert docker(berthd, "ps", "--filter", f"name={name}", "--format", "{{.Status}}").stdout.endswith(
            "(healthy)\n")

        events = docker(berthd, "events", "--since", since, "--until", str(int(time.time()) + 1),
                        "--filter", f"container={name}", "--filter", "event=health_status",
                        "--format", "{{.Action}}").stdout.split("\n")
        assert events[:2] == ["health_status: unhealthy", "health_status: healthy"], events

        # Stopped: no more probes, and unhealthy (as dockerd); a start begins again at starting.
        docker(berthd, "stop", "-t", "0", name)
        stopped = _health(berthd, name)
        assert stopped["Status"] == "unhealthy"
        time.sleep(0.5)
        assert _health(berthd, name)["Log"] == stopped["Log"]
        docker(berthd, "start", name)
        assert _health(berthd, name)["Status"] == "starting"
        _wait_status(berthd, name, "healthy")  # /tmp/ok is still in its writable layer
    finally:
        docker(berthd, "rm", "-f", name, check=False)


def test_timeout_output_limit_none_and_bad_values(berthd: Daemon, name: str) -> None:
    slow, chatty, none = name + "-slow", name + "-chatty", name + "-none"
    docker(berthd, "run", "-d", "--name", slow, "--health-cmd", "sleep 30", "--health-interval", "100ms",
           "--health-timeout", "300ms", "busybox", "sleep", "1000")
    docker(berthd, "run", "-d", "--name", chatty, "--health-cmd", "yes | head -c 5000; exit 1",
           "--health-interval", "100ms", "busybox", "sleep", "1000")
    docker(berthd, "run", "-d", "--name", none, "--no-healthcheck", "busybox", "sleep", "1000")
    status, out = berthd.request("POST", f"/containers/create?name={name}-missing", {
        "Image": "busybox", "Cmd": ["sleep", "1000"],
        "Healthcheck": {"Test": ["CMD", "/nonexistent"], "Interval": 100_000_000}})
    assert status == 201, out
    docker(berthd, "start", name + "-missing")
    try:
        entry = _wait_status(berthd, slow, "unhealthy")["Log"][0]
        assert entry == {**entry, "ExitCode": -1, "Output": "Health check exceeded timeout (300ms)"}
        # timed-out probes are killed, not left to pile up (one may be running now)
        top = docker(berthd, "top", slow).stdout
        assert top.count("sleep 30") <= 1, top

        entry = _wait_status(berthd, chatty, "unhealthy")["Log"][0]
        assert entry["ExitCode"] == 1 and entry["Output"] == "y\n" * 2048 + "..."

        entry = _wait_status(berthd, name + "-missing", "unhealthy")["Log"][0]
        assert entry["ExitCode"] == -1 and entry["Output"].startswith("OCI runtime exec failed: ")
        assert entry["Output"].endswith("no such file or directory: unknown"), entry

        info = json.loads(docker(berthd, "inspect", none).stdout)[0]
        assert "Health" not in info["State"] and info["Config"]["Healthcheck"] == {"Test": ["NONE"]}

        for body, message in (({"Interval": 1000}, "Interval in Healthcheck cannot be less than 1ms"),
                              ({"Retries": -1}, "Retries in Healthcheck cannot be negative")):
            status, out = berthd.request("POST", "/containers/create", {
                "Image": "busybox", "Healthcheck": {"Test": ["CMD", "true"], **body}})
            assert (status, json.loads(out)["message"]) == (400, message)
        bad = docker(berthd, "ps", "--filter", "health=bogus", check=False)
        assert bad.returncode != 0 and "Unrecognised filter value for health: bogus" in bad.stderr
        conflict = docker(berthd, "run", "--no-healthcheck", "--health-cmd", "true", "busybox", check=False)
        assert "--no-healthcheck conflicts with --health-* options" in conflict.stderr
    finally:
        docker(berthd, "rm", "-f", slow, chatty, none, name + "-missing", check=False)


def test_image_healthcheck_merges_with_flags(berthd: Daemon, name: str, tmp_path: Any) -> None:
    """HEALTHCHECK from a build; --health-interval on run replaces only the interval (dockerd's merge)."""
    (tmp_path / "Dockerfile").write_text("FROM busybox\nHEALTHCHECK --interval=30s --retries=4 CMD true\n")
    docker(berthd, "build", "-q", "-t", name, str(tmp_path))
    try:
        docker(berthd, "run", "-d", "--name", name, "--health-interval", "100ms", name, "sleep", "1000")
        config = json.loads(docker(berthd, "inspect", "-f", "{{json .Config.Healthcheck}}", name).stdout)
        assert config == {**config, "Test": ["CMD-SHELL", "true"], "Interval": 100_000_000, "Retries": 4}
        _wait_status(berthd, name, "healthy", timeout=5)
    finally:
        docker(berthd, "rm", "-f", name, check=False)
        docker(berthd, "rmi", name, check=False)


def test_probes_resume_after_berthd_restart(fresh_berthd: Callable[..., Daemon], name: str) -> None:
    d = fresh_berthd()
    docker(d, "run", "-d", "--name", name, "--health-cmd", "true", "--health-interval", "100ms", "busybox",
           "sleep", "1000")
    _wait_status(d, name, "healthy")
    d.kill9()
    down = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    d.start()
    health = _health(d, name)
    assert health["Status"] == "healthy"  # kept across the restart, not starting over
    deadline = time.time() + 5
    while not any(e["Start"] > down for e in _health(d, name)["Log"]):
        assert time.time() < deadline, "no probe after berthd came back"
        time.sleep(0.1)
    docker(d, "pause", name)
    assert _health(d, name)["Status"] == "unhealthy"  # dockerd: no probes while paused
    docker(d, "unpause", name)
    _wait_status(d, name, "healthy")
