"""berthd can die (kill -9) without its containers noticing; a new berthd picks them up."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable

from ..conftest import Daemon


def _create_ticker(d: Daemon, name: str) -> str:
    body = {"Image": "busybox", "Cmd": ["sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done"]}
    cid = d.json("POST", f"/containers/create?name={name}", body)["Id"]  # type: ignore[index]
    status, out = d.request("POST", f"/containers/{cid}/start")
    assert status == 204, out
    return cid


def _log_lines(d: Daemon, cid: str) -> int:
    status, out = d.request("GET", f"/containers/{cid}/logs?stdout=1")
    assert status == 200
    return out.count(b"tick ")


def test_kill9_keeps_containers_and_logs(fresh_berthd: Callable[..., Daemon]) -> None:
    d = fresh_berthd()
    ids = [_create_ticker(d, f"tick{i}") for i in range(5)]
    image_id = d.json("GET", "/images/busybox/json")["Id"]  # type: ignore[index]
    time.sleep(0.5)
    before = {cid: _log_lines(d, cid) for cid in ids}

    d.kill9()
    time.sleep(1.0)  # the containers go on without a daemon
    d.start()

    listed = d.json("GET", "/containers/json")
    assert {c["Id"] for c in listed} == set(ids)  # type: ignore[union-attr]
    assert all(c["State"] == "running" for c in listed)  # type: ignore[union-attr]
    for cid in ids:
        assert _log_lines(d, cid) >= before[cid] + 5, "logs kept growing while berthd was down"
    # the image and the metadata are intact
    assert d.json("GET", "/images/busybox/json")["Id"] == image_id  # type: ignore[index]
    db = sqlite3.connect(f"{d.root}/data/berth.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()

    # the new daemon controls them
    status, _ = d.request("POST", f"/containers/{ids[0]}/stop?t=1")
    assert status == 204
    state = d.json("GET", f"/containers/{ids[0]}/json")["State"]  # type: ignore[index]
    assert state["Running"] is False and state["ExitCode"] == 137
    status, _ = d.request("DELETE", f"/containers/{ids[1]}?force=1")
    assert status == 204


def test_exit_while_daemon_down_is_recorded(fresh_berthd: Callable[..., Daemon]) -> None:
    d = fresh_berthd()
    cid = d.json("POST", "/containers/create", {"Image": "busybox", "Cmd": ["sh", "-c", "sleep 0.5; exit 4"]})["Id"]  # type: ignore[index]
    assert d.request("POST", f"/containers/{cid}/start")[0] == 204
    d.kill9()
    time.sleep(1.2)
    d.start()
    state = d.json("GET", f"/containers/{cid}/json")["State"]  # type: ignore[index]
    assert state["Status"] == "exited" and state["ExitCode"] == 4
    # and it can run again
    assert d.request("POST", f"/containers/{cid}/start")[0] == 204
    status, out = d.request("POST", f"/containers/{cid}/wait")
    assert json.loads(out)["StatusCode"] == 4
