"""Entry point of the cluster processes: `python -m berth.cluster.main manage|join|demo`.

`berth cluster ...` execs this module: the CLI itself must not import the API layer.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import threading

STRATEGIES = ("spread", "binpack", "random")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--etcd", required=True, help="etcd client URLs, comma-separated (http://HOST:PORT,...)")
    p.add_argument("--prefix", default="/berth/cluster/", help="key prefix of this cluster in etcd")
    p.add_argument("--lease-ttl", type=int, default=3, help="seconds a node or manager stays healthy unrenewed")
    p.add_argument("--log-level", default="info")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="berth cluster")
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("manage", help="run a manager serving the Engine API for the cluster")
    _common(m)
    m.add_argument("--addr", required=True, help="unix:///PATH or tcp://HOST:PORT to serve on")
    m.add_argument("--strategy", choices=STRATEGIES, default="spread")
    m.add_argument("--pidfile")
    j = sub.add_parser("join", help="register a berthd as a node and keep its health lease alive")
    _common(j)
    j.add_argument("--advertise", required=True, help="the node's engine address (unix://... or tcp://...)")
    j.add_argument("--name", help="node name (default: the engine's Name from /info)")
    d = sub.add_parser("demo", help="a local cluster: etcd, three netns hosts and a manager")
    d.add_argument("--down", action="store_true", help="remove the demo cluster")
    d.add_argument("--state-dir", default="/run/berth-cluster-demo", help="where the demo keeps everything")
    d.add_argument("--strategy", choices=STRATEGIES, default="spread")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    import faulthandler

    faulthandler.register(signal.SIGUSR1)  # `kill -USR1` prints every thread's stack to the log
    if args.cmd != "demo":
        logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from berth.etcd import EtcdError

    try:
        if args.cmd == "manage":
            from berth.cluster.serve import run_manager

            asyncio.run(run_manager(args.etcd, args.addr, args.strategy, args.prefix, args.lease_ttl, args.pidfile))
        elif args.cmd == "join":
            _join(args)
        else:
            from berth.cluster import demo

            return demo.down(args.state_dir) if args.down else demo.up(args.state_dir, args.strategy)
    except (EtcdError, ValueError, OSError) as e:
        print(f"berth cluster {args.cmd}: {e}", file=sys.stderr)
        return 1
    return 0


def _join(args: argparse.Namespace) -> None:
    from berth.client.errors import ClientError, DaemonUnreachable
    from berth.cluster.join import NodeAgent
    from berth.cluster.store import ClusterStore
    from berth.etcd import EtcdClient

    try:
        agent = NodeAgent(ClusterStore(EtcdClient(args.etcd), args.prefix), args.advertise, args.name, args.lease_ttl)
    except (ClientError, DaemonUnreachable) as e:
        raise OSError(f"cannot read the node's /info at {args.advertise}: {e}") from e
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    logging.getLogger(__name__).info("node %s joining as %s", agent.name, args.advertise)
    agent.run(stop)


if __name__ == "__main__":
    sys.exit(main())
