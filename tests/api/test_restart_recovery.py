"""Restart policies are honoured when berthd itself starts again, after kill -9 (dockerd's rules)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

from ..conftest import Daemon


def _run(d: Daemon, name: str, policy: str, cmd: str = "sleep 1000") -> str:
    name_, _, count = policy.partition(":")
    body = {"Image": "busybox", "Cmd": ["sh", "-c", cmd],
            "HostConfig": {"RestartPolicy": {"Name": name_, "MaximumRetryCount": int(count or 0)}}}
    cid = d.json("POST", f"/containers/create?name={name}", body)["Id"]  # type: ignore[index]
    status, out = d.request("POST", f"/containers/{cid}/start")
    assert status == 204, out
    return cid


def _state(d: Daemon, ref: str) -> dict:
    return d.json("GET", f"/containers/{ref}/json")["State"]  # type: ignore[index,return-value]


def _wait_running(d: Daemon, names: list[str], timeout: float = 15) -> dict[str, bool]:
    deadline = time.time() + timeout
    while True:
        running = {n: bool(_state(d, n)["Running"]) for n in names}
        if all(running.values()) or time.time() > deadline:
            return running
        time.sleep(0.1)


def test_policies_after_kill9_with_containers_gone(fresh_berthd: Callable[..., Daemon]) -> None:
    """As after a host crash: berthd and every container process die; the new berthd starts
    `always`, `unless-stopped` and `on-failure` ones again, never `no` ones."""
    d = fresh_berthd()
    for name, policy in (("al", "always"), ("us", "unless-stopped"), ("of", "on-failure:5"), ("no", "no")):
        _run(d, name, policy)
    pids = {n: _state(d, n)["Pid"] for n in ("al", "us", "of", "no")}
    d.kill9()
    for pid in pids.values():
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)  # conmon records the exits
    d.start()
    assert _wait_running(d, ["al", "us", "of"]) == {"al": True, "us": True, "of": True}
    assert _state(d, "no")["Status"] == "exited"
    for n in ("al", "us", "of"):
        assert _state(d, n)["Pid"] != pids[n]


def test_policies_after_kill9_of_stopped_containers(fresh_berthd: Callable[..., Daemon]) -> None:
    """Containers already down when berthd starts: `always` comes back even when the user
    stopped it, `unless-stopped` only when they did not, `on-failure` after a failure only."""
    d = fresh_berthd()
    _run(d, "al-stopped", "always")
    _run(d, "us-stopped", "unless-stopped")
    _run(d, "of-ok", "on-failure", "exit 0")
    _run(d, "of-fail", "on-failure:1", "exit 3")
    for n in ("al-stopped", "us-stopped"):
        assert d.request("POST", f"/containers/{n}/stop?t=1")[0] == 204
    d.json("POST", "/containers/create?name=never-started",
           {"Image": "busybox", "Cmd": ["sleep", "1000"], "HostConfig": {"RestartPolicy": {"Name": "always"}}})
    time.sleep(1.0)  # of-fail used its one retry
    assert _state(d, "of-fail")["Status"] == "exited"
    d.kill9()
    d.start()
    assert _wait_running(d, ["al-stopped"]) == {"al-stopped": True}
    time.sleep(0.5)
    assert not _state(d, "us-stopped")["Running"]
    assert not _state(d, "of-ok")["Running"]
    assert not _state(d, "of-fail")["Running"]  # its retry count was used up before
    assert _state(d, "never-started")["Status"] == "created"
