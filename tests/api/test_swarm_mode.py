"""Single-node swarm mode: init/leave, /swarm, /info's Swarm block, swarm-scoped overlay networks,
through docker-py and the docker CLI against a berthd of this module's own."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import docker
import pytest

from ..conftest import Daemon, start_daemon, stop_daemon
from .test_docker_cli import DOCKER
from .test_docker_cli import docker as docker_cmd


@pytest.fixture(scope="module")
def swarmd() -> Iterator[Daemon]:
    d = start_daemon()
    yield d
    stop_daemon(d)


@pytest.fixture
def api(swarmd: Daemon) -> Iterator[docker.APIClient]:
    client = docker.APIClient(base_url=swarmd.host, version="1.41", timeout=60)
    yield client
    client.leave_swarm(force=True)  # whatever the test left (a 503 outside a swarm is ignored)
    client.close()


def _message(status_out: tuple[int, bytes]) -> str:
    return str(json.loads(status_out[1])["message"])


def test_init_info_inspect_leave_and_restart(swarmd: Daemon, api: docker.APIClient) -> None:
    assert api.info()["Swarm"]["LocalNodeState"] == "inactive"
    status, out = swarmd.request("GET", "/swarm")
    assert status == 503 and "not a swarm manager" in _message((status, out))
    assert swarmd.request("GET", "/services")[0] == 503
    status, out = swarmd.request("POST", "/swarm/leave")
    assert status == 503 and _message((status, out)) == "This node is not part of a swarm"

    status, out = swarmd.request("POST", "/swarm/init", {"AdvertiseAddr": "nosuchif0", "ListenAddr": "0.0.0.0:2377"})
    assert status == 400 and "nosuchif0" in _message((status, out))
    assert api.info()["Swarm"]["LocalNodeState"] == "inactive"

    node_id = api.init_swarm("127.0.0.1", listen_addr="0.0.0.0:23770")
    assert isinstance(node_id, str) and len(node_id) == 25
    with pytest.raises(docker.errors.APIError) as e:
        api.init_swarm("127.0.0.1", listen_addr="0.0.0.0:23770")
    assert e.value.status_code == 503 and "already part of a swarm" in str(e.value.explanation)
    assert api.init_swarm("127.0.0.1", force_new_cluster=True) == node_id

    sw = api.info()["Swarm"]
    assert (sw["LocalNodeState"], sw["NodeID"], sw["NodeAddr"], sw["ControlAvailable"]) == \
        ("active", node_id, "127.0.0.1", True)
    assert (sw["Nodes"], sw["Managers"]) == (1, 1)
    assert sw["RemoteManagers"] == [{"NodeID": node_id, "Addr": "127.0.0.1:23770"}]
    cluster = api.inspect_swarm()
    assert cluster["ID"] == sw["Cluster"]["ID"] and cluster["Spec"]["Name"] == "default"
    assert cluster["JoinTokens"]["Worker"].startswith("SWMTKN-1-")
    assert api.inspect_node("self")["ManagerStatus"]["Leader"] is True
    assert [n["ID"] for n in api.nodes()] == [node_id]
    ingress = api.inspect_network("ingress")
    assert (ingress["Driver"], ingress["Scope"], ingress["Ingress"], ingress["Attachable"]) == \
        ("overlay", "swarm", True, False)

    # What a one-node berth swarm does not do: clear 501s, and no joining another swarm.
    status, out = swarmd.request("GET", "/services")
    assert status == 501 and "single-node" in _message((status, out))
    assert swarmd.request("POST", "/secrets/create", {"Name": "s"})[0] == 501
    assert swarmd.request("POST", "/swarm/join", {"RemoteAddrs": ["127.0.0.1:2377"]})[0] == 503

    status, out = swarmd.request("POST", "/swarm/leave")
    assert status == 503 and "participating as a manager" in _message((status, out))

    # The swarm survives a restart of berthd, networks included.
    swarmd.proc.terminate()
    swarmd.proc.wait(10)
    swarmd.start()
    assert api.info()["Swarm"]["NodeID"] == node_id
    assert api.inspect_network("ingress")["Ingress"] is True

    assert api.leave_swarm(force=True)
    assert api.info()["Swarm"]["LocalNodeState"] == "inactive"
    with pytest.raises(docker.errors.NotFound):
        api.inspect_network("ingress")


def test_swarm_scoped_networks(swarmd: Daemon, api: docker.APIClient) -> None:
    with pytest.raises(docker.errors.APIError) as e:  # no swarm, no cluster store: refused as before
        api.create_network("ov-before", driver="overlay")
    assert e.value.status_code == 403
    api.init_swarm("127.0.0.1", listen_addr="127.0.0.1:23771")

    local = api.create_network("loc-net", scope="local")["Id"]
    try:
        assert api.inspect_network(local, scope="local")["Scope"] == "local"
        with pytest.raises(docker.errors.NotFound):
            api.inspect_network(local, scope="swarm")
        ov = api.create_network("ov-net", driver="overlay", attachable=True)["Id"]
        view = api.inspect_network(ov, scope="swarm")
        assert (view["Driver"], view["Scope"], view["Attachable"], view["Ingress"]) == \
            ("overlay", "swarm", True, False)
        assert view["IPAM"]["Config"][0]["Subnet"]
        with pytest.raises(docker.errors.NotFound):
            api.inspect_network(ov, scope="local")
        assert {n["Name"] for n in api.networks(filters={"scope": "swarm"})} == {"ingress", "ov-net"}

        with pytest.raises(docker.errors.APIError) as e:  # one ingress network at most
            api.create_network("ing2", driver="overlay", ingress=True)
        assert "already present" in str(e.value.explanation)
        api.create_network("closed-ov", driver="overlay")
        with pytest.raises(docker.errors.APIError) as e:  # only --attachable networks take containers
            api.create_container("busybox", "true", host_config=api.create_host_config(network_mode="closed-ov"))
        assert e.value.status_code == 403 and "not manually attachable" in str(e.value.explanation)
    finally:
        api.remove_network(local)
    api.leave_swarm(force=True)
    assert not [n for n in api.networks() if n["Name"] in ("ov-net", "closed-ov", "ingress")]
    gone = subprocess.run(["ip", "link", "show", f"br-{ov[:12]}"], capture_output=True)
    assert gone.returncode != 0  # the bridge that realised it went with it


@pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")
def test_docker_cli_swarm_overlay(swarmd: Daemon) -> None:
    try:
        out = docker_cmd(swarmd, "swarm", "init", "--advertise-addr", "127.0.0.1",
                         "--listen-addr", "127.0.0.1:23772").stdout
        assert "Swarm initialized: current node" in out and "docker swarm join --token SWMTKN-1-" in out
        assert "Swarm: active" in docker_cmd(swarmd, "info").stdout
        docker_cmd(swarmd, "network", "create", "-d", "overlay", "--attachable", "cli-ov")
        docker_cmd(swarmd, "run", "-d", "--name", "ov-a", "--network", "cli-ov", "busybox", "sleep", "60")
        ping = docker_cmd(swarmd, "run", "--rm", "--network", "cli-ov", "busybox", "ping", "-c1", "-W2", "ov-a")
        assert "1 packets received" in ping.stdout

        refused = docker_cmd(swarmd, "swarm", "leave", check=False)
        assert refused.returncode != 0 and "--force" in refused.stderr
        assert "Node left the swarm." in docker_cmd(swarmd, "swarm", "leave", "--force").stdout
        # As dockerd: leaving disconnects containers from the swarm's networks, which go.
        nets = json.loads(docker_cmd(swarmd, "inspect", "-f", "{{json .NetworkSettings.Networks}}", "ov-a").stdout)
        assert "cli-ov" not in nets
        assert docker_cmd(swarmd, "network", "inspect", "cli-ov", check=False).returncode != 0
        assert "Swarm: inactive" in docker_cmd(swarmd, "info").stdout
    finally:
        docker_cmd(swarmd, "rm", "-f", "ov-a", check=False)
        docker_cmd(swarmd, "swarm", "leave", "--force", check=False)
