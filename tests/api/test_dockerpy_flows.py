"""docker-py (the PyPI `docker` package) drives the engine-core flows against berthd."""

from __future__ import annotations

import io
import uuid

import docker
import docker.errors
import pytest


def test_run_and_output(dockerpy: docker.DockerClient) -> None:
    assert dockerpy.containers.run("busybox", ["echo", "hi"], remove=True) == b"hi\n"
    with pytest.raises(docker.errors.ContainerError) as e:
        dockerpy.containers.run("busybox", ["sh", "-c", "echo oops >&2; exit 3"], remove=True, stderr=True)
    assert e.value.exit_status == 3


def test_detached_exec_stop_start_rm(dockerpy: docker.DockerClient) -> None:
    name = f"dpy-{uuid.uuid4().hex[:8]}"
    c = dockerpy.containers.run("busybox", ["sleep", "1000"], detach=True, name=name,
                                labels={"suite": "flows"})
    try:
        assert c.name == name
        assert any(x.id == c.id for x in dockerpy.containers.list(filters={"label": "suite=flows"}))
        code, out = c.exec_run(["ls", "/"])
        assert code == 0 and b"bin" in out.split()
        code, _ = c.exec_run(["sh", "-c", "echo persisted > /etc/mark"])
        assert code == 0
        c.stop(timeout=1)
        c.reload()
        assert c.status == "exited"
        c.start()
        code, out = c.exec_run(["cat", "/etc/mark"])
        assert (code, out) == (0, b"persisted\n")
        assert c.top()["Titles"][:2] == ["UID", "PID"]
    finally:
        c.remove(force=True)
    with pytest.raises(docker.errors.NotFound):
        dockerpy.containers.get(name)


def test_images_save_load_tag(dockerpy: docker.DockerClient) -> None:
    img = dockerpy.images.get("busybox")
    data = b"".join(img.save(named=True))
    tag = f"dpy-{uuid.uuid4().hex[:6]}"
    assert img.tag(tag, "v1")
    assert f"{tag}:v1" in dockerpy.images.get(img.id).tags
    dockerpy.images.remove(f"{tag}:v1")
    (loaded,) = dockerpy.images.load(io.BytesIO(data).getvalue())
    assert loaded.id == img.id
    assert [i.id for i in dockerpy.images.list(filters={"reference": "busybox"})] == [img.id]
    assert img.history()[0]["Id"] == img.id


def test_used_image_removal_conflicts(dockerpy: docker.DockerClient) -> None:
    c = dockerpy.containers.run("busybox", ["sleep", "1000"], detach=True)
    try:
        with pytest.raises(docker.errors.APIError) as e:
            dockerpy.images.remove("busybox")
        assert e.value.status_code == 409
    finally:
        c.remove(force=True)


def test_logs_and_wait(dockerpy: docker.DockerClient) -> None:
    c = dockerpy.containers.run("busybox", ["sh", "-c", "echo a; echo b; exit 2"], detach=True)
    try:
        assert c.wait()["StatusCode"] == 2
        assert c.logs() == b"a\nb\n"
        assert c.logs(tail=1) == b"b\n"
    finally:
        c.remove()


def test_events_stream_with_filters(dockerpy: docker.DockerClient) -> None:
    import time

    since = time.time() - 1
    c = dockerpy.containers.run("busybox", ["true"], detach=True, name=f"ev-{uuid.uuid4().hex[:6]}")
    c.wait()
    c.remove()
    events = dockerpy.events(since=since, until=time.time() + 1, decode=True,
                             filters={"container": c.id, "type": "container"})
    actions = [e["Action"] for e in events]
    assert actions[:1] == ["create"] and "start" in actions and "die" in actions and actions[-1] == "destroy"
