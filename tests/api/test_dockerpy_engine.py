"""Engine-core behaviour that docker-py's own integration suite relies on, through docker-py
against a real berthd: kill, restart policies, log config, attach, exec with a tty, detach keys."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator

import docker
import docker.errors
import pytest


@pytest.fixture
def api(dockerpy: docker.DockerClient) -> docker.APIClient:
    return dockerpy.api


@pytest.fixture
def sleeper(dockerpy: docker.DockerClient) -> Iterator[docker.models.containers.Container]:
    c = dockerpy.containers.run("busybox", ["sleep", "1000"], detach=True, stdin_open=True)
    yield c
    c.remove(force=True)


def _raw(sock: object) -> socket.socket:
    s = getattr(sock, "_sock", sock)
    assert isinstance(s, socket.socket)
    s.settimeout(10)
    return s


def _read_frames(s: socket.socket) -> list[tuple[int, bytes]]:
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    frames = []
    while data:
        num, size = struct.unpack(">BxxxL", data[:8])
        frames.append((num, data[8:8 + size]))
        data = data[8 + size:]
    return frames


def test_kill_returns_once_the_container_is_down(dockerpy: docker.DockerClient) -> None:
    c = dockerpy.containers.run("busybox", ["sleep", "1000"], detach=True)
    try:
        c.kill()
        c.reload()  # no wait in between: dockerd's kill (SIGKILL) returns after the exit
        assert (c.status, c.attrs["State"]["ExitCode"]) == ("exited", 137)
        c.remove()
    finally:
        try:
            c.remove(force=True)
        except docker.errors.NotFound:
            pass


def test_log_config(api: docker.APIClient, dockerpy: docker.DockerClient) -> None:
    hc = api.create_host_config(log_config=docker.types.LogConfig(type="", config={"max-file": "3"}))
    cid = api.create_container("busybox", ["true"], host_config=hc)["Id"]
    try:
        assert api.inspect_container(cid)["HostConfig"]["LogConfig"] == {"Type": "json-file",
                                                                       "Config": {"max-file": "3"}}
    finally:
        api.remove_container(cid)
    with pytest.raises(docker.errors.APIError) as e:
        api.create_container("busybox", ["true"], host_config=api.create_host_config(
            log_config=docker.types.LogConfig(type="asdf")))
    assert e.value.status_code == 400
    assert e.value.explanation == 'error looking up logging plugin asdf: plugin "asdf" not found'
    c = dockerpy.containers.run("busybox", ["echo", "hi"], detach=True, log_config={"type": "none"})
    try:
        c.wait()
        with pytest.raises(docker.errors.APIError) as e:
            c.logs()
        assert e.value.status_code == 501
    finally:
        c.remove(force=True)


def test_restart_policy(dockerpy: docker.DockerClient) -> None:
    c = dockerpy.containers.run("busybox", ["sh", "-c", "exit 3"], detach=True,
                                restart_policy={"Name": "on-failure", "MaximumRetryCount": 2})
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            c.reload()
            if c.attrs["RestartCount"] == 2 and c.status == "exited":
                break
            time.sleep(0.1)
        assert (c.attrs["RestartCount"], c.status, c.attrs["State"]["ExitCode"]) == (2, "exited", 3)
    finally:
        c.remove(force=True)
    c = dockerpy.containers.run("busybox", ["sleep", "0.2"], detach=True, restart_policy={"Name": "always"})
    try:
        c.wait()
        with pytest.raises(docker.errors.APIError) as e:
            c.remove()  # restarting counts as running
        assert e.value.status_code == 409 and "Stop the container before" in e.value.explanation
        c.stop(timeout=1)
        time.sleep(0.5)
        c.reload()
        assert c.status == "exited"  # stopped by the user: the policy leaves it down
    finally:
        c.remove(force=True)


def test_attach_logs_without_stream_and_output_without_newline(api: docker.APIClient) -> None:
    cid = api.create_container("busybox", ["printf", "no newline"])["Id"]
    try:
        s = _raw(api.attach_socket(cid, {"stdout": 1, "stream": 1, "logs": 1}))
        api.start(cid)
        assert _read_frames(s) == [(1, b"no newline")]
        s.close()
        api.wait(cid)
        # right after the exit, more than once: the bytes must not race the 101 response
        for _ in range(5):
            assert api.attach(cid, stream=False, logs=True) == b"no newline"
        assert api.logs(cid) == b"no newline"
    finally:
        api.remove_container(cid, force=True)


def test_exec_with_tty(api: docker.APIClient, sleeper: docker.models.containers.Container) -> None:
    cmd = ["sh", "-c", "echo out; echo err >&2; tty"]
    # a pty: \r\n line ends, stderr merged; framed on stdout unless the start asks for raw
    out = api.exec_start(api.exec_create(sleeper.id, cmd, tty=True))
    assert out.startswith(b"out\r\nerr\r\n/dev/pts/")
    exec_id = api.exec_create(sleeper.id, ["printf", "framed"], tty=True)
    frames = _read_frames(_raw(api.exec_start(exec_id, socket=True)))
    assert frames == [(1, b"framed")]
    assert api.exec_inspect(exec_id)["ExitCode"] == 0
    exec_id = api.exec_create(sleeper.id, ["printf", "raw"], tty=True)
    s = _raw(api.exec_start(exec_id, socket=True, tty=True))
    data = b""
    while chunk := s.recv(1024):
        data += chunk
    assert data == b"raw"


def test_exec_that_cannot_start(sleeper: docker.models.containers.Container) -> None:
    code, out = sleeper.exec_run(["nosuchcmd"])
    assert code == 126
    assert out.startswith(b"OCI runtime exec failed: ") and b"nosuchcmd" in out, out
    code, out = sleeper.exec_run(["sh", "-c", "exit 255"])
    assert (code, out) == (255, b"")


def _assert_detached(s: socket.socket, keys: list[bytes]) -> None:
    for k in keys:
        s.sendall(k)
        time.sleep(0.3)
    s.settimeout(5)
    try:
        assert s.recv(1024) == b""  # the daemon closed the connection
    except ConnectionResetError:
        pass


def test_detach_keys(api: docker.APIClient) -> None:
    cid = api.create_container("busybox", ["cat"], stdin_open=True, tty=True)["Id"]
    try:
        api.start(cid)
        _assert_detached(_raw(api.attach_socket(cid, {"stdin": 1, "stream": 1})), [b"\x10", b"\x11"])
        s = _raw(api.attach_socket(cid, {"stdin": 1, "stream": 1, "detachKeys": "ctrl-x"}))
        _assert_detached(s, [b"\x18"])
        assert api.inspect_container(cid)["State"]["Running"]  # detached, not stopped
        exec_id = api.exec_create(cid, ["cat"], stdin=True, tty=True, detach_keys="ctrl-p")
        _assert_detached(_raw(api.exec_start(exec_id, tty=True, socket=True)), [b"\x10"])
        assert api.exec_inspect(exec_id)["Running"]
        with pytest.raises(docker.errors.APIError) as e:
            api.attach_socket(cid, {"stdin": 1, "stream": 1, "detachKeys": "ctrl-"}).close()
        assert e.value.status_code == 400
    finally:
        api.remove_container(cid, force=True)


def test_load_of_a_bad_archive_reports_in_the_stream(dockerpy: docker.DockerClient) -> None:
    with pytest.raises(docker.errors.ImageLoadError):
        dockerpy.images.load(b"abc")


def test_diff(dockerpy: docker.DockerClient) -> None:
    c = dockerpy.containers.run("busybox", ["sh", "-c", "echo x > /etc/mark; rm /bin/sync; touch /test"],
                                detach=True)
    try:
        c.wait()
        # as dockerd: the /etc files berth mounts are no change of the container's
        assert sorted((d["Path"], d["Kind"]) for d in c.diff()) == [
            ("/bin", 0), ("/bin/sync", 2), ("/etc", 0), ("/etc/mark", 1), ("/test", 1)]
    finally:
        c.remove(force=True)
    c = dockerpy.containers.run("busybox", ["true"], detach=True)
    try:
        c.wait()
        assert c.diff() is None
    finally:
        c.remove(force=True)


def test_host_config_keys_match_case_insensitively(api: docker.APIClient) -> None:
    # docker-py spells these `CPURealtimePeriod`/`CPURealtimeRuntime`; dockerd's JSON decoding
    # matches field names without regard to case
    hc = api.create_host_config(cpu_rt_period=1000, cpu_rt_runtime=500)
    cid = api.create_container("busybox", ["true"], host_config=hc)["Id"]
    try:
        info = api.inspect_container(cid)["HostConfig"]
        assert (info["CpuRealtimePeriod"], info["CpuRealtimeRuntime"]) == (1000, 500)
        assert "CPURealtimePeriod" not in info
    finally:
        api.remove_container(cid)
