"""berthd: the composition root. Wires concrete stores, runtime and API together, then serves.

Stopping berthd (SIGTERM, SIGINT, or a crash) never stops containers: conmon owns them, and the
next berthd picks them up in `ContainerService.recover`.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING

from berth import __version__

if TYPE_CHECKING:
    from .overlay import OverlayService
    from .remap import Remap

DEFAULT_SOCKET = "/run/berth/berth.sock"
DEFAULT_DATA_ROOT = "/var/lib/berth"
DEFAULT_EXEC_ROOT = "/run/berth"
RUNTIMES = {"runc": "/usr/sbin/runc", "crun": "/usr/bin/crun"}

log = logging.getLogger("berthd")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="berthd", description="berth container engine daemon")
    p.add_argument("-H", "--host", action="append", default=None,
                   help=f"socket(s) to listen on (default unix://{DEFAULT_SOCKET}); unix:// or tcp://")
    p.add_argument("--data-root", default=DEFAULT_DATA_ROOT)
    p.add_argument("--exec-root", default=DEFAULT_EXEC_ROOT)
    p.add_argument("--exec-launcher", choices=("berth", "runtime"), default="berth",
                   help="who starts non-tty exec processes: berth's launcher (fast) or the OCI runtime")
    p.add_argument("--default-runtime", default="runc", choices=sorted(RUNTIMES))
    p.add_argument("--label", action="append", default=[], help="daemon label key=value")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--pidfile", default=None)
    p.add_argument("--insecure-registry", action="append", default=[], metavar="HOST[:PORT]|CIDR",
                   help="registry to reach over plain HTTP (loopback registries always are)")
    p.add_argument("--registry-mirror", action="append", default=[], metavar="URL",
                   help="a docker.io mirror to pull from first (http://HOST:PORT or https://HOST)")
    p.add_argument("--registry-certs-dir", default="/etc/docker/certs.d", metavar="DIR",
                   help="per-registry CAs and client certificates, DIR/HOST[:PORT]/*.crt (docker's certs.d)")
    p.add_argument("--bridge-name", default="berth0", help="the default bridge network's interface (≤ 15 chars)")
    p.add_argument("--iptables-prefix", default="BERTH", help="prefix of berth's iptables chains")
    p.add_argument("--default-pool", default="10.210.0.0/16,size=24", metavar="CIDR[,size=N]",
                   help="where networks without --subnet get their subnets")
    p.add_argument("--userns-remap", default=None, metavar="default|USER[:GROUP]",
                   help="run containers in a user namespace mapped to this user's /etc/subuid and /etc/subgid "
                        "ranges (default: the dockremap user, created if need be)")
    p.add_argument("--cluster-store", default=None, metavar="etcd://HOST:PORT[,HOST:PORT]",
                   help="the cluster store of overlay networks (shared by the engines of a cluster)")
    p.add_argument("--cluster-advertise", default=None, metavar="ADDR|IFACE",
                   help="this engine's address for the others' VXLAN traffic (an address, or an interface's)")
    p.add_argument("--cluster-store-opt", action="append", default=[], metavar="discovery.ttl=SECONDS",
                   help="lease of this engine's overlay endpoints in the store (default 15 s)")
    p.add_argument("--config-file", default=None, metavar="FILE",
                   help='JSON ({"labels": [...]}) re-read on SIGHUP: labels change without a restart')
    p.add_argument("--version", action="version", version=f"berthd {__version__}")
    return p.parse_args(argv)


def _lock(path: str) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit(f"berthd: another berthd is using {os.path.dirname(path)}")
    return fd


async def run(args: argparse.Namespace) -> None:
    # Reap runtime processes through pidfds on the loop, not a waiting thread per process.
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(asyncio.get_running_loop())
    asyncio.set_child_watcher(watcher)
    from berth.api.app import build_router
    from berth.api.http.server import serve_tcp, serve_unix
    from berth.common.db import Database
    from berth.content.store import ContentStore
    from berth.images.store import ImageStore
    from berth.runtime.oci import OCIRuntime, RuntimeInfo
    from berth.snapshots.overlay import LayerStore
    from berth.volumes.local import LocalDriver

    from .archive import ArchiveAPI
    from .buildcache import BuildCache
    from .builder import Builder
    from .commit import CommitAPI
    from .container_api import ContainerAPI
    from .containers import ContainerService
    from .distribution import RegistrySettings
    from .distribution_api import DistributionAPI
    from .events import EventBus
    from .execs import ExecService
    from .health import HealthMonitor
    from .image_api import ImageAPI
    from .mounts import RuntimeMounter
    from .network_api import NetworkAPI
    from .network_state import NetworkSettingsOptions, parse_pool
    from .networks import NetworkService
    from .resources import ResourceAPI
    from .swarm import SwarmService
    from .system_api import SystemAPI
    from .volume_api import VolumeAPI

    data_root = os.path.abspath(args.data_root)
    exec_root = os.path.abspath(args.exec_root)
    os.makedirs(data_root, mode=0o711, exist_ok=True)
    os.makedirs(exec_root, mode=0o711, exist_ok=True)
    remap = _userns_remap(args, data_root)
    if remap is not None:  # dockerd's layout: the remapped root's own store under <uid>.<gid>
        data_root = os.path.join(data_root, f"{remap.idmap.root_uid}.{remap.idmap.root_gid}")
        os.makedirs(data_root, mode=0o710, exist_ok=True)
        os.chown(data_root, 0, remap.idmap.root_gid)
    lock_fd = _lock(os.path.join(data_root, "berthd.lock"))
    # conmon inherits our working directory and drops a stray `oom` file there on an OOM kill
    # (the one berth reads is in the container's persist dir): keep it in the exec root.
    os.chdir(exec_root)

    db = Database(os.path.join(data_root, "berth.db"))
    content = ContentStore(os.path.join(data_root, "content"))
    content.clean_ingest()
    layers = LayerStore(os.path.join(data_root, "overlay"))
    layers.clean_tmp()
    events = EventBus()
    runtimes = {name: OCIRuntime(RuntimeInfo(name, path), os.path.join(exec_root, name),
                                 os.path.join(exec_root, "exits"))
                for name, path in RUNTIMES.items() if os.path.exists(path)}
    if args.default_runtime not in runtimes:
        sys.exit(f"berthd: the default runtime {args.default_runtime} is not installed")

    class _Usage:
        """Late-bound: the image store needs the container service, which needs the image store."""

        svc: ContainerService | None = None

        def users(self, image_id: str) -> list[tuple[str, bool]]:
            return self.svc.users(image_id) if self.svc else []

        def chains_in_use(self) -> set[str]:
            return self.svc.chains_in_use() if self.svc else set()

    usage = _Usage()
    images = ImageStore(db, content, layers, usage)
    volumes = LocalDriver(os.path.join(data_root, "volumes"), db, RuntimeMounter(),
                          owner=(remap.idmap.root_uid, remap.idmap.root_gid) if remap else None)
    try:
        net_opts = NetworkSettingsOptions(args.bridge_name, args.iptables_prefix, [parse_pool(args.default_pool)])
    except ValueError as e:
        sys.exit(f"berthd: {e}")
    if len(args.bridge_name) > 15 or len(args.iptables_prefix) > 16:
        sys.exit("berthd: --bridge-name takes at most 15 characters, --iptables-prefix 16")
    networks = NetworkService(db, exec_root, events, net_opts)
    overlay = await asyncio.to_thread(_overlay_service, args, _daemon_id(data_root))  # netlink: off the loop
    if overlay is not None:  # before containers are recovered: a restart policy may start one on an overlay
        networks.overlay = overlay
        overlay.on_networks = networks.set_overlay_networks
        await asyncio.to_thread(overlay.start, asyncio.get_running_loop())
        networks.set_overlay_networks(list(overlay.networks.values()))
    containers = ContainerService(data_root, db, images, layers, runtimes, args.default_runtime, events,
                                  volumes=volumes, networks=networks, remap=remap)
    usage.svc = containers
    networks.lookup = containers.get  # legacy links name other containers
    networks.all_containers = containers.all
    networks.container_dir = containers.dir
    execs = ExecService(containers, launcher=args.exec_launcher == "berth")
    containers.watchers.append(HealthMonitor(containers, execs))  # before recover resumes probes
    await networks.recover()  # before containers are re-watched: their ports must keep working
    await containers.recover()
    await networks.resume(containers.all())  # the built-in DNS of those still running
    swarm = SwarmService(db, networks, containers)
    networks.swarm_active = lambda: swarm.active
    daemon_id = _daemon_id(data_root)
    system_b = SystemAPI(daemon_id, data_root, containers, events, args.label,
                         {n: r.info.path for n, r in runtimes.items()}, args.default_runtime)
    system_b.swarm_info = swarm.info_block
    if remap is not None:
        system_b.security_options.append("name=userns")
    registries = RegistrySettings(list(args.insecure_registry), args.registry_certs_dir, list(args.registry_mirror))
    distribution_b = DistributionAPI(images, events, registries, os.path.join(data_root, "tmp"))
    image_b = ImageAPI(images, events, os.path.join(data_root, "tmp"), lambda: "1.45")
    image_b.distribution = distribution_b
    builder = Builder(containers, images, layers, BuildCache(db, images), os.path.join(data_root, "tmp"))
    system_b.build_cache_usage = builder.cache_usage
    container_b = ContainerAPI(containers)
    system_b.image_summaries = lambda: image_b.list_images(False, {}, True)
    system_b.container_summaries = lambda: container_b.ps(True, 0, True, {})
    router = build_router(f"berth/{__version__}", system_b, container_b, image_b,
                          execs, VolumeAPI(volumes, containers.mounts, events),
                          archive_b=ArchiveAPI(containers, os.path.join(data_root, "tmp")),
                          commit_b=CommitAPI(containers, images, os.path.join(data_root, "tmp")),
                          resources_b=ResourceAPI(containers), distribution_b=distribution_b,
                          networks_b=NetworkAPI(networks, containers), swarm_b=swarm,
                          build_b=builder)

    if args.config_file:  # before serving: a reload may be requested as soon as we answer
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, _reload_config, args.config_file, system_b)
    servers = []
    for host in args.host or [f"unix://{DEFAULT_SOCKET}"]:
        if host.startswith("unix://"):
            servers.append(await serve_unix(host[len("unix://"):], router))
        elif host.startswith("tcp://"):
            addr = host[len("tcp://"):]
            h, _, port = addr.rpartition(":")
            servers.append(await serve_tcp(h or "127.0.0.1", int(port or 2375), router))
        elif host.startswith("/"):
            servers.append(await serve_unix(host, router))
        else:
            sys.exit(f"berthd: unsupported host {host!r} (use unix:// or tcp://)")
    if args.pidfile:
        with open(args.pidfile + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(args.pidfile + ".tmp", args.pidfile)
    log.info("berthd %s serving on %s (data root %s)", __version__, ", ".join(args.host or [DEFAULT_SOCKET]),
             data_root)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("berthd stopping; containers keep running")
    for s in servers:
        s.close()
    if overlay is not None:
        await asyncio.to_thread(overlay.close)
    networks.close()
    db.close()
    os.close(lock_fd)
    if args.pidfile:
        try:
            os.unlink(args.pidfile)
        except FileNotFoundError:
            pass


def _userns_remap(args: argparse.Namespace, data_root: str) -> Remap | None:
    """The remapping asked for by --userns-remap or the config file's "userns-remap" (not both,
    as dockerd); exits with the reason when it cannot be had."""
    import json

    value = args.userns_remap
    if args.config_file:
        try:
            with open(args.config_file) as f:
                in_file = json.load(f).get("userns-remap")
        except FileNotFoundError:
            in_file = None
        except (OSError, ValueError, AttributeError) as e:
            sys.exit(f"berthd: unable to configure the daemon with file {args.config_file}: {e}")
        if in_file is not None and value is not None:
            sys.exit("berthd: the following directives are specified both as a flag and in the configuration "
                     f"file: userns-remap: (from flag: {value}, from file: {in_file})")
        value = value if value is not None else in_file
    if not value:
        return None
    from berth.runtime.userns import UserNamespace, check_traversable, load_map

    from .remap import Remap

    try:
        idmap = load_map(str(value))
    except ValueError as e:
        sys.exit(f"berthd: {e}")
    blocked = check_traversable(os.path.join(data_root, "x"), idmap.root_uid, idmap.root_gid)
    if blocked:
        sys.exit(f"berthd: a subdirectory in your graphroot path ({data_root}) restricts access to the remapped "
                 f"root uid/gid ({blocked}); please fix by allowing 'o+x' permissions on existing directories")
    try:
        return Remap(UserNamespace(idmap))
    except OSError as e:
        sys.exit(f"berthd: cannot set up user namespace remapping: {e}")


def _cluster_settings(args: argparse.Namespace) -> tuple[str | None, str | None, dict[str, str]]:
    """--cluster-store, --cluster-advertise and --cluster-store-opt, or the config file's
    "cluster-store", "cluster-advertise" and "cluster-store-opts" (not both, as dockerd)."""
    import json

    opts = dict(o.partition("=")[::2] for o in args.cluster_store_opt)
    flags = {"cluster-store": args.cluster_store, "cluster-advertise": args.cluster_advertise,
             "cluster-store-opts": opts or None}
    if args.config_file:
        try:
            with open(args.config_file) as f:
                config = json.load(f)
        except FileNotFoundError:
            config = {}
        except (OSError, ValueError) as e:
            sys.exit(f"berthd: unable to configure the daemon with file {args.config_file}: {e}")
        for key, flag in flags.items():
            in_file = config.get(key) if isinstance(config, dict) else None
            if in_file is not None and flag is not None:
                sys.exit(f"berthd: the following directives are specified both as a flag and in the configuration "
                         f"file: {key}: (from flag: {flag}, from file: {in_file})")
            if in_file is not None:
                flags[key] = in_file
    store, advertise = flags["cluster-store"], flags["cluster-advertise"]
    return (str(store) if store else None, str(advertise) if advertise else None,
            {str(k): str(v) for k, v in (flags["cluster-store-opts"] or {}).items()})


def _overlay_service(args: argparse.Namespace, engine_id: str) -> OverlayService | None:
    """The overlay networks' service when a cluster store is configured; exits on bad settings."""
    from ipaddress import IPv4Address

    store, advertise, opts = _cluster_settings(args)
    if not store:
        if advertise:
            sys.exit("berthd: --cluster-advertise needs --cluster-store")
        return None
    if not advertise:
        sys.exit("berthd: --cluster-store needs --cluster-advertise ADDR|IFACE (where the other engines send "
                 "this one's VXLAN traffic)")
    from berth.etcd import EtcdClient

    from .overlay import OverlayService, parse_store

    unknown = sorted(set(opts) - {"discovery.ttl"})
    ttl = opts.get("discovery.ttl", "15").removesuffix("s")
    if unknown or not ttl.isdigit() or int(ttl) < 1:
        sys.exit(f"berthd: unsupported --cluster-store-opt {unknown or opts}: only discovery.ttl=SECONDS")
    # docker's form ADDR:PORT or IFACE:PORT: the port is VXLAN's own here
    where = advertise.rsplit(":", 1)[0] if advertise.count(":") == 1 else advertise
    try:
        endpoints = parse_store(store)
        vtep = IPv4Address(where)
    except ValueError as e:
        if "cluster store" in str(e):
            sys.exit(f"berthd: {e}")
        from berth.common.errors import NotFound
        from berth.network import links
        from berth.network.overlay import vtep_of

        with links.host_ipr() as ipr:
            try:
                vtep = vtep_of(ipr, where)
            except NotFound as nf:
                sys.exit(f"berthd: --cluster-advertise: {nf.message}")
    return OverlayService(EtcdClient(endpoints), vtep, engine_id, int(ttl))


def _reload_config(path: str, system_b: object) -> None:
    """SIGHUP: take the labels from the --config-file (a missing file or key changes nothing)."""
    import json

    try:
        with open(path) as f:
            config = json.load(f)
        labels = config.get("labels")
        if labels is None:
            return
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise ValueError('"labels" must be a list of "key=value" strings')
    except FileNotFoundError:
        return
    except (OSError, ValueError, AttributeError) as e:
        log.error("reload of %s failed, configuration unchanged: %s", path, e)
        return
    system_b.labels = list(labels)  # type: ignore[attr-defined]
    log.info("reloaded %s: labels %s", path, labels)


def _daemon_id(data_root: str) -> str:
    path = os.path.join(data_root, "engine-id")
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        import uuid

        value = str(uuid.uuid4())
        with open(path + ".tmp", "w") as f:
            f.write(value)
        os.rename(path + ".tmp", path)
        return value


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if os.geteuid() != 0:
        sys.exit("berthd: must run as root")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
