"""`berth cluster manage`: run a manager serving the Engine API on a unix socket or TCP port."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from concurrent.futures import ThreadPoolExecutor

from berth.api.app import build_router
from berth.api.http.server import serve_tcp, serve_unix
from berth.cluster.containers import ContainerProxy, ExecProxy
from berth.cluster.manager import Manager
from berth.cluster.store import ClusterStore
from berth.cluster.system import ImageProxy, SystemProxy, VolumeProxy
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
                          ImageProxy(manager), ExecProxy(manager), VolumeProxy(manager))
    server = await (serve_unix(where, router) if kind == "unix" else serve_tcp(where, port, router))
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
