"""`run`/`create` flags to the create request body, as the docker CLI would send it."""

from __future__ import annotations

import pytest

from berth.cli.runopts import (
    OptionError,
    RunOptions,
    create_body,
    env_file_entries,
    image_with_tag,
    parse_env,
    parse_publish,
    start_error_status,
)


def test_minimal_foreground_run() -> None:
    body = create_body(RunOptions(image="busybox", command=["echo", "hi"]), {})
    assert body["Image"] == "busybox"
    assert body["Cmd"] == ["echo", "hi"]
    assert (body["AttachStdin"], body["AttachStdout"], body["AttachStderr"]) == (False, True, True)
    assert body["OpenStdin"] is False and body["Tty"] is False
    assert body["HostConfig"] == {"NetworkMode": "default", "AutoRemove": False, "Privileged": False}
    assert "Entrypoint" not in body


def test_detached_interactive_rm() -> None:
    body = create_body(RunOptions(image="busybox", detach=True, interactive=True, rm=True), {})
    assert (body["AttachStdin"], body["AttachStdout"], body["AttachStderr"]) == (False, False, False)
    assert body["OpenStdin"] is True and body["StdinOnce"] is False
    assert body["HostConfig"]["AutoRemove"] is True
    assert body["Cmd"] is None


def test_foreground_interactive_closes_stdin_once() -> None:
    body = create_body(RunOptions(image="busybox", interactive=True), {})
    assert body["AttachStdin"] is True and body["StdinOnce"] is True


def test_env_labels_and_settings() -> None:
    opts = RunOptions(
        image="busybox",
        env=["A=1", "FROM_HOST", "UNSET"],
        env_file_lines=env_file_entries("# comment\n\n  B=2\nC=\n"),
        labels=["x=1", "flag"],
        workdir="/tmp",
        user="1000:1000",
        hostname="box",
        network="host",
        entrypoint="",
        stop_signal="SIGINT",
        stop_timeout=3,
    )
    body = create_body(opts, {"FROM_HOST": "h"})
    assert body["Env"] == ["B=2", "C=", "A=1", "FROM_HOST=h"]
    assert body["Labels"] == {"x": "1", "flag": ""}
    assert (body["WorkingDir"], body["User"], body["Hostname"]) == ("/tmp", "1000:1000", "box")
    assert body["HostConfig"]["NetworkMode"] == "host"
    assert body["Entrypoint"] == [""]
    assert (body["StopSignal"], body["StopTimeout"]) == ("SIGINT", 3)


def test_entrypoint_value() -> None:
    assert create_body(RunOptions(image="b", entrypoint="/bin/sh"), {})["Entrypoint"] == ["/bin/sh"]


def test_publish_and_volumes_and_restart() -> None:
    opts = RunOptions(
        image="b",
        publish=["8080:80", "127.0.0.1:5353:53/udp", "9000-9001:9000-9001", "443"],
        volumes=["/host:/ctr:ro", "/anon"],
        restart="on-failure:3",
    )
    body = create_body(opts, {})
    assert body["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}, "9000/tcp": {}, "9001/tcp": {}, "443/tcp": {}}
    assert body["HostConfig"]["PortBindings"] == {
        "80/tcp": [{"HostIp": "", "HostPort": "8080"}],
        "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5353"}],
        "9000/tcp": [{"HostIp": "", "HostPort": "9000"}],
        "9001/tcp": [{"HostIp": "", "HostPort": "9001"}],
        "443/tcp": [{"HostIp": "", "HostPort": ""}],
    }
    assert body["HostConfig"]["Binds"] == ["/host:/ctr:ro"]
    assert body["Volumes"] == {"/anon": {}}
    assert body["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}


@pytest.mark.parametrize("spec", ["abc", "1:2:3:4", "0", "80-70"])
def test_bad_publish(spec: str) -> None:
    with pytest.raises(OptionError):
        parse_publish([spec])


def test_conflicting_rm_and_restart() -> None:
    with pytest.raises(OptionError):
        create_body(RunOptions(image="b", rm=True, restart="always"), {})


def test_empty_env_rejected() -> None:
    with pytest.raises(OptionError):
        parse_env(["=x"], {})


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("busybox", "busybox:latest"),
        ("busybox:1", "busybox:1"),
        ("localhost:5000/x", "localhost:5000/x:latest"),
        ("x@sha256:" + "a" * 64, "x@sha256:" + "a" * 64),
    ],
)
def test_image_with_tag(ref: str, expected: str) -> None:
    assert image_with_tag(ref) == expected


@pytest.mark.parametrize(
    ("message", "status"),
    [
        ('exec: "nosuch": executable file not found in $PATH: unknown', 127),
        ("exec /nope: no such file or directory", 127),
        ('exec: "/etc/passwd": permission denied: unknown', 126),
        ("cgroup setup failed", 125),
    ],
)
def test_start_error_status(message: str, status: int) -> None:
    assert start_error_status(message) == status


def test_cpus_devices_sysctls_and_userns_flags() -> None:
    opts = RunOptions(image="busybox", cpus="0.2", devices=["/dev/fuse", "/dev/null:/dev/xnull:rw", "/dev/sda:r"],
                      sysctls=["net.ipv4.ip_forward=1", "kernel.shmmax=1"], userns="host")
    hc = create_body(opts, {})["HostConfig"]
    assert hc["NanoCpus"] == 200_000_000
    assert hc["Devices"] == [
        {"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rwm"},
        {"PathOnHost": "/dev/null", "PathInContainer": "/dev/xnull", "CgroupPermissions": "rw"},
        {"PathOnHost": "/dev/sda", "PathInContainer": "/dev/sda", "CgroupPermissions": "r"},
    ]
    assert hc["Sysctls"] == {"net.ipv4.ip_forward": "1", "kernel.shmmax": "1"}
    assert hc["UsernsMode"] == "host"


@pytest.mark.parametrize(("opts", "message"), [
    ({"cpus": "a"}, 'invalid argument "a" for "--cpus" flag: failed to parse a as a rational number'),
    ({"devices": ["/dev/null:/x:rwx"]}, "invalid device mode: rwx"),
    ({"devices": ["a:b:c:d"]}, "invalid device specification: a:b:c:d"),
    ({"sysctls": ["vm.swappiness=1"]}, "sysctl 'vm.swappiness=1' is not allowed"),
    ({"sysctls": ["net.ipv4.ip_forward"]}, "sysctl 'net.ipv4.ip_forward' is not allowed"),
    ({"userns": "private"}, "--userns: invalid USER mode"),
])
def test_bad_resource_and_security_flags(opts: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(OptionError, match=message.replace("(", r"\(")):
        create_body(RunOptions(image="busybox", **opts), {})
