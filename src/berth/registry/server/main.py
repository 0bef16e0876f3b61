"""Command line of the registry process: `serve` (the default) and offline `gc`.

Proposed CLI hook: `berth registry serve ...` and `berth registry gc ...` call `main(argv)`
with the arguments after `registry`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from .service import Config


def _addr(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="berth registry serve", description="Run an OCI distribution registry.")
    p.add_argument("--addr", type=_addr, default=("127.0.0.1", 5000), help="HOST:PORT to listen on")
    p.add_argument("--root", required=True, help="directory for blobs, manifests, tags and uploads")
    p.add_argument("--htpasswd", help="htpasswd file of bcrypt users; enables HTTP basic auth")
    p.add_argument("--delete", action="store_true", help="allow DELETE of blobs, manifests and tags")
    p.add_argument("--log-level", default="info")
    return p


def _gc_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="berth registry gc",
                                description="Remove blobs no manifest references (registry must be stopped).")
    p.add_argument("--root", required=True)
    p.add_argument("--dry-run", action="store_true")
    return p


async def _serve(args: argparse.Namespace) -> None:
    from .app import build
    from .http import serve

    _registry, router = build(Config(root=args.root, delete_enabled=args.delete), args.htpasswd)
    host, port = args.addr
    server = await serve(host, port, router)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    bound = server.sockets[0].getsockname()
    logging.getLogger("berth.registry").info("listening on %s:%s, root %s", bound[0], bound[1], args.root)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["gc"]:
        from .gc import collect

        gargs = _gc_parser().parse_args(argv[1:])
        report = collect(gargs.root, dry_run=gargs.dry_run)
        verb = "would remove" if gargs.dry_run else "removed"
        for digest in report.removed:
            print(f"{verb} {digest}")
        print(f"{verb} {len(report.removed)} blobs ({report.freed_bytes} bytes), kept {report.kept}, "
              f"dropped {report.uploads_removed} upload sessions")
        return 0
    if argv[:1] == ["serve"]:
        argv = argv[1:]
    args = _serve_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
