"""What running docker-py's integration suite against berthd and dockerd side by side showed
(bench/README.md): `GET /containers/{id}/attach/ws` (a websocket attach; the client is
websocket-client, the library docker-py uses for `attach_socket(ws=True)`), `start` returning
only once the container's program runs, and `StorageOpt` refused rather than ignored."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import docker
import pytest
import websocket

from tests.conftest import Daemon


@pytest.fixture
def api(dockerpy: docker.DockerClient) -> Iterator[docker.APIClient]:
    yield dockerpy.api


def _ws(d: Daemon, path: str) -> websocket.WebSocket:
    """A websocket over the daemon's unix socket (docker-py itself can only do this over TCP)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(d.socket)
    return websocket.create_connection(f"ws://localhost{path}", socket=sock, timeout=10)


def _container(api: docker.APIClient, cmd: str, **kwargs: Any) -> str:
    return str(api.create_container("busybox", ["sh", "-c", cmd], host_config=api.create_host_config(
        network_mode="none"), **kwargs)["Id"])


def test_ws_attach_streams_output_unframed_then_closes(berthd: Daemon, api: docker.APIClient) -> None:
    # docker-py's test_run_container_reading_socket_ws: attached before start, one frame
    cid = _container(api, "printf 'hi there'; printf ' err' >&2")
    try:
        ws = _ws(berthd, f"/v1.41/containers/{cid}/attach/ws?logs=1&stream=1&stdout=1")
        api.start(cid)
        got = b""
        while True:
            opcode, data = ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
            assert opcode == websocket.ABNF.OPCODE_BINARY
            got += data
        # no 8-byte stream headers; before API 1.42 stderr comes too, whatever the query says
        assert got.replace(b" err", b"", 1) == b"hi there", got
        ws.close()
    finally:
        api.remove_container(cid, force=True)


def test_ws_attach_forwards_stdin_and_answers_pings(berthd: Daemon, api: docker.APIClient) -> None:
    cid = _container(api, "read line; echo got:$line", stdin_open=True)
    try:
        api.start(cid)
        ws = _ws(berthd, f"/v1.45/containers/{cid}/attach/ws?stream=1&stdin=1&stdout=1")
        ws.ping(b"are you there")
        opcode, data = ws.recv_data(control_frame=True)
        assert (opcode, data) == (websocket.ABNF.OPCODE_PONG, b"are you there")
        ws.send_binary(b"hello\n")  # masked, as every client frame
        assert ws.recv() == b"got:hello\n"
        assert api.wait(cid, timeout=10)["StatusCode"] == 0
        ws.close()
    finally:
        api.remove_container(cid, force=True)


def test_ws_attach_refuses_a_plain_request(berthd: Daemon, api: docker.APIClient) -> None:
    cid = _container(api, "true")
    try:
        status, body = berthd.request("GET", f"/containers/{cid}/attach/ws?stream=1")
        assert status == 400 and b"websocket" in body, body
        with pytest.raises(websocket.WebSocketBadStatusException) as e:
            _ws(berthd, "/containers/no-such-container/attach/ws?stream=1")
        assert e.value.status_code == 404
    finally:
        api.remove_container(cid, force=True)


def test_start_returns_once_the_program_runs(api: docker.APIClient) -> None:
    # runc's init closes exec.fifo before its execve: right at the fifo's EOF the process is
    # still `runc:[2:INIT]` about half the time (bench/exec_wait_bench.py). A signal, `top` or
    # `exec` right after `start` must meet the program, as it does under dockerd.
    made = []
    try:
        for _ in range(8):
            cid = _container(api, "exec sleep 100")
            made.append(cid)
            api.start(cid)
            pid = api.inspect_container(cid)["State"]["Pid"]
            with open(f"/proc/{pid}/comm") as f:
                assert not f.read().startswith("runc:")
    finally:
        for cid in made:
            api.remove_container(cid, force=True)


def test_storage_opt_is_refused_not_ignored(berthd: Daemon) -> None:
    # overlay layers here have no size quota: dockerd's overlay2 refuses it too (off xfs+pquota)
    status, body = berthd.request("POST", "/containers/create",
                                  {"Image": "busybox", "HostConfig": {"StorageOpt": {"size": "120G"}}})
    assert status == 400 and b"storage-opt" in body, body
