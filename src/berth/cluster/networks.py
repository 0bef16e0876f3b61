"""The manager's network backend: global (overlay) networks once for the cluster, local ones per node.

The nodes share their overlay networks through the cluster store (`berthd --cluster-store`), so a
global network is created or removed on one healthy node and the others learn of it from etcd; the
manager waits until every healthy node lists it, so a container placed anywhere right after finds it.
Local networks are named `<node>/<name>` (as classic Swarm listed them): `network create` with such
a name makes a local network on that node, and `--network <node>/<name>` places the container there.

A create without a node names no host for a bridge, so, as classic Swarm turned a create without a
driver into an overlay create, the manager turns both the default and `bridge` into `overlay`: that
is what compose sends for a project's networks, and the only network every node can attach to.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from berth.client.errors import ClientError, DaemonUnreachable
from berth.cluster.manager import Manager
from berth.cluster.store import NodeRecord
from berth.cluster.view import ClusterView, Located, call_node, node_error
from berth.common.errors import BerthError, Conflict, InvalidParameter, NotFound

SPREAD_TIMEOUT = 10.0  # seconds for a global network to reach every healthy node
LOCAL_DRIVERS_TURNED_GLOBAL = ("", "bridge")


def _is_global(net: dict[str, Any]) -> bool:
    return net.get("Scope") == "global"


class NetworkProxy:
    def __init__(self, manager: Manager) -> None:
        self.view = manager.view

    def _split(self, ref: str) -> tuple[NodeRecord | None, str]:
        """`node/name` -> (that node, name); anything else -> (None, ref)."""
        node, sep, rest = ref.partition("/")
        if sep and rest:
            for n in self.view.healthy():
                if n.name == node:
                    return n, rest
        return None, ref

    def _healthy(self) -> list[NodeRecord]:
        nodes = self.view.healthy()
        if not nodes:
            raise BerthError("no healthy node in the cluster")
        return nodes

    # --- reads ----------------------------------------------------------------------------------

    def list_networks(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        seen: set[str] = set()
        out = []
        for n, res in self.view.each(self._healthy(), lambda c, _n: c.networks.list(filters or None)):
            if isinstance(res, Exception):
                continue
            for net in res:
                if _is_global(net):
                    if net["Id"] in seen:
                        continue
                    seen.add(net["Id"])
                else:
                    net["Name"] = f"{n.name}/{net['Name']}"
                out.append(net)
        return out

    def _find(self, ref: str) -> tuple[NodeRecord, dict[str, Any]]:
        """The network a reference names, and a node that has it; a global network wins over same-named
        local ones, and a name local to several nodes needs its `node/` prefix."""
        node, name = self._split(ref)
        if node is not None:
            return node, call_node(lambda: self.view.client(node).networks.inspect(name))
        found = [(n, r) for n, r in self.view.each(self._healthy(), lambda c, _n: c.networks.inspect(ref))
                 if isinstance(r, dict)]
        for n, net in found:
            if _is_global(net):
                return n, net
        if not found:
            raise NotFound(f"network {ref} not found")
        if len(found) > 1:
            raise InvalidParameter(f"network {ref} is ambiguous ({len(found)} matches on the nodes "
                           f"{', '.join(n.name for n, _ in found)}): use <node>/{ref}")
        return found[0]

    def inspect(self, ref: str) -> dict[str, Any]:
        node, net = self._find(ref)
        if not _is_global(net):
            net["Name"] = f"{node.name}/{net['Name']}"
        return net

    # --- writes ---------------------------------------------------------------------------------

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return await asyncio.to_thread(self._create, dict(body))

    def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        name = str(body.get("Name") or "")
        if not name:
            raise InvalidParameter("network name is required")
        node, local_name = self._split(name)
        if node is not None:  # a local network on the node named
            body["Name"] = local_name
            return dict(call_node(lambda: self.view.client(node).networks.create(body)))
        if "/" in name:
            raise NotFound(f"No such node: {name.partition('/')[0]} (a local network is named <node>/<name>)")
        if str(body.get("Driver") or "") in LOCAL_DRIVERS_TURNED_GLOBAL:
            body["Driver"] = "overlay"
        if body["Driver"] != "overlay":
            raise InvalidParameter(f"a {body['Driver']} network is local to one node: name it <node>/{name}")
        nodes = self._healthy()
        if body.get("CheckDuplicate", True) is not False:
            for _n, net in self.view.each(nodes, lambda c, _n: c.networks.inspect(name)):
                if isinstance(net, dict) and net.get("Name") == name:
                    raise Conflict(f"network with name {name} already exists")
        last: Exception | None = None
        for n in nodes:  # the first node that answers creates it for the whole cluster
            try:
                out = dict(self.view.client(n).networks.create(body))
                break
            except ClientError as e:
                raise node_error(e) from e
            except (DaemonUnreachable, OSError) as e:  # unreachable: the next node
                last = e
        else:
            raise node_error(last or BerthError("no node could create the network"))
        self._wait_everywhere(out["Id"], present=True)
        return out

    def _wait_everywhere(self, network_id: str, present: bool) -> None:
        """Until every healthy node has (or has dropped) the network, or SPREAD_TIMEOUT passes."""
        deadline = time.monotonic() + SPREAD_TIMEOUT
        while time.monotonic() < deadline:
            results = self.view.each(self.view.healthy(), lambda c, _n: c.networks.inspect(network_id))
            if all(isinstance(r, dict) == present for _n, r in results
                   if not (isinstance(r, Exception) and not isinstance(r, ClientError))):
                return
            time.sleep(0.05)

    async def remove(self, ref: str) -> None:
        def run() -> None:
            node, net = self._find(ref)
            call_node(lambda: self.view.client(node).networks.remove(net["Id"]))
            if _is_global(net):
                self._wait_everywhere(net["Id"], present=False)
        await asyncio.to_thread(run)

    async def prune(self, filters: dict[str, list[str]]) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            deleted: list[str] = []
            for n, res in self.view.each(self._healthy(), lambda c, _n: c.networks.prune(filters or None)):
                if isinstance(res, dict):
                    deleted += [f"{n.name}/{name}" for name in res.get("NetworksDeleted") or []]
            return {"NetworksDeleted": deleted or None}
        return await asyncio.to_thread(run)

    def _on_container_node(self, ref: str, container: str) -> tuple[Located, str]:
        """The container's node, and the network's reference as that node knows it."""
        loc = self.view.locate(container)
        node, name = self._split(ref)
        if node is not None and node.name != loc.node.name:
            raise InvalidParameter(f"network {ref} is local to {node.name}; container {container} runs on "
                                   f"{loc.node.name}")
        return loc, name

    async def connect(self, ref: str, container: str, endpoint_config: dict[str, Any]) -> None:
        def run() -> None:
            loc, name = self._on_container_node(ref, container)
            call_node(lambda: self.view.client(loc.node).networks.connect(name, loc.id, endpoint_config))
        await asyncio.to_thread(run)

    async def disconnect(self, ref: str, container: str, force: bool) -> None:
        def run() -> None:
            loc, name = self._on_container_node(ref, container)
            call_node(lambda: self.view.client(loc.node).networks.disconnect(name, loc.id, force))
        await asyncio.to_thread(run)


def place_on_local_network(view: ClusterView, body: dict[str, Any]) -> dict[str, Any]:
    """A create naming `--network <node>/<name>`: constrained to that node, the network named as the
    node knows it."""
    host = dict(body.get("HostConfig") or {})
    mode = str(host.get("NetworkMode") or "")
    if "/" not in mode or mode.startswith("container:"):
        return body
    node_name, _, name = mode.partition("/")
    if not any(n.name == node_name for n in view.healthy()):
        return body
    out = dict(body)
    host["NetworkMode"] = name
    out["HostConfig"] = host
    endpoints = dict((body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {})
    if mode in endpoints:
        endpoints[name] = endpoints.pop(mode)
        out["NetworkingConfig"] = {**(body.get("NetworkingConfig") or {}), "EndpointsConfig": endpoints}
    out["Env"] = [*(body.get("Env") or []), f"constraint:node=={node_name}"]
    return out
