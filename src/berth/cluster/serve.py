"""`berth cluster manage`: run a manager serving the Engine API on a unix socket or TCP port."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
from concurrent.futures import ThreadPoolExecutor

from berth.api.app import build_router
from berth.api.http.router import Router
from berth.api.http.server import (
    Handler,
    HijackResponse,
    Request,
    Response,
    StreamResponse,
    serve_tcp,
    serve_unix,
)
from berth.cluster.containers import ContainerProxy, ExecProxy
from berth.cluster.manager import Manager
from berth.cluster.networks import NetworkProxy
from berth.cluster.store import ClusterStore
from berth.cluster.system import ImageProxy, NoBuilds, SystemProxy, VolumeProxy
from berth.cluster.view import ClusterView
from berth.etcd import EtcdClient

log = logging.getLogger(__name__)


def parse_addr(addr: str) -> tuple[str, str, int]:
    """('unix', path, 0) or ('tcp', host, port)."""
    if addr.startswith("unix://"):
        return "unix", addr[len("unix://"):], 0
    if addr.startswith("/"):
        return "unix", addr, 0
    if addr.startswith("tcp://"):
        host, _, port = addr[len("tcp://"):].rpartition(":")
        if not port.isdigit():
            raise ValueError(f"invalid address {addr!r}: expected tcp://HOST:PORT")
        return "tcp", host or "127.0.0.1", int(port)
    raise ValueError(f"invalid address {addr!r}: expected unix:///PATH or tcp://HOST:PORT")


_QUALIFIED = re.compile(
    r"^(?P<head>(/v[0-9.]+)?/(?P<kind>containers|networks)/)(?P<node>[^/]+)/(?P<rest>[^/]+(/.*)?)$")


def _qualified_shape(kind: str, method: str, rest: str) -> bool:
    """Whether `<first>/<rest>` has more parts than a plain reference's route would: `/containers/ID/json`
    and `/networks/ID/connect` stay as they are even when ID happens to be a node's name."""
    parts = rest.count("/") + 2
    if kind == "containers":
        return parts >= 3 or method == "DELETE"
    return parts >= 3 or method in ("GET", "HEAD", "DELETE")


def node_qualified_paths(router: Router, view: ClusterView) -> Handler:
    """`/containers/<node>/<name>/...` and `/networks/<node>/<name>/...`: the docker CLI puts a
    `node/name` reference (as `ps` and `network ls` show them) into the path unescaped; routed as
    one escaped reference when the first part names a node."""
    async def handle(req: Request) -> Response | StreamResponse | HijackResponse:
        m = _QUALIFIED.match(req.path)
        if m is not None and _qualified_shape(m["kind"], req.method, m["rest"]):
            nodes = await asyncio.to_thread(view.nodes)
            if any(n.name == m["node"] for n, _ in nodes):
                req.path = f"{m['head']}{m['node']}%2F{m['rest']}"
        return await router(req)
    return handle


async def run_manager(etcd_urls: str, addr: str, strategy: str = "spread", prefix: str = "/berth/cluster/",
                      lease_ttl: int = 3, pidfile: str | None = None) -> None:
    kind, where, port = parse_addr(addr)
    loop = asyncio.get_running_loop()
    # Node calls run in threads; the default executor (cores + 4) is too small for a busy manager.
    loop.set_default_executor(ThreadPoolExecutor(max_workers=64, thread_name_prefix="manager"))
    store = ClusterStore(EtcdClient(etcd_urls), prefix)
    manager = Manager(store, strategy, advertise=addr, lease_ttl=lease_ttl)
    manager.start()
    containers = ContainerProxy(manager)
    router = build_router(f"berth-cluster/{manager.id}", SystemProxy(manager), containers,
                          ImageProxy(manager), ExecProxy(manager), VolumeProxy(manager),
                          networks_b=NetworkProxy(manager), build_b=NoBuilds())
    handler = node_qualified_paths(router, manager.view)
    server = await (serve_unix(where, handler) if kind == "unix" else serve_tcp(where, port, handler))
    if pidfile:
        with open(pidfile + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(pidfile + ".tmp", pidfile)
    log.info("cluster manager %s serving on %s (strategy %s)", manager.id, addr, strategy)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        server.close()
        await asyncio.to_thread(manager.stop)
        if kind == "unix":
            try:
                os.unlink(where)
            except FileNotFoundError:
                pass
        if pidfile:
            try:
                os.unlink(pidfile)
            except FileNotFoundError:
                pass
