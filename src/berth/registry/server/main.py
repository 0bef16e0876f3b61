"""Command line of the registry process: `serve` (the default) and offline `gc`.

Proposed CLI hook: `berth registry serve ...` and `berth registry gc ...` call `main(argv)`
with the arguments after `registry`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import ssl
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
    p.add_argument("--policy", help="JSON access policy: which users may pull/push which repositories")
    p.add_argument("--token", action="store_true",
                   help="Docker's token auth: Bearer JWTs from this server's /token (Basic login there)")
    p.add_argument("--token-realm", default="", help="token endpoint URL to advertise (default: ours)")
    p.add_argument("--token-service", default="berth-registry", help="the service name tokens are for")
    p.add_argument("--token-key", help="file with the token signing secret (default: random per start)")
    p.add_argument("--tls-cert", help="PEM certificate (chain) to serve HTTPS with; needs --tls-key")
    p.add_argument("--tls-key", help="PEM private key of --tls-cert")
    p.add_argument("--proxy", default="", metavar="URL",
                   help="be a pull-through cache of the registry at URL (https://... or http://...)")
    p.add_argument("--proxy-username", default="", help="login for the upstream registry")
    p.add_argument("--proxy-password", default="", help="password for the upstream registry")
    p.add_argument("--delete", action="store_true", help="allow DELETE of blobs, manifests and tags")
    p.add_argument("--log-level", default="info")
    return p


def _gc_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="berth registry gc",
                                description="Remove blobs no manifest references (the registry stopped, or --online).")
    p.add_argument("--root", required=True)
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--online", action="store_true",
                   help="safe while a registry serves the root: spare blobs and uploads touched within --grace")
    p.add_argument("--grace", type=float, default=3600.0, metavar="SECONDS",
                   help="with --online: how recently used a blob may be and still go (default 3600)")
    return p


def _tls_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    if not cert and not key:
        return None
    if not (cert and key):
        raise ValueError("--tls-cert and --tls-key go together")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


async def _serve(args: argparse.Namespace) -> None:
    from berth.api.http.server import serve_tcp as serve

    from .app import AuthConfig, build

    auth = AuthConfig(args.htpasswd, args.policy, args.token, args.token_realm, args.token_service,
                      args.token_key, tls=bool(args.tls_cert), proxy=args.proxy,
                      proxy_username=args.proxy_username, proxy_password=args.proxy_password)
    try:
        tls = _tls_context(args.tls_cert, args.tls_key)
        _registry, router = build(Config(root=args.root, delete_enabled=args.delete), auth)
    except (OSError, ValueError) as e:  # an unreadable htpasswd/policy/key file, a bad policy
        raise SystemExit(f"berth registry serve: {e}") from None
    host, port = args.addr
    server = await serve(host, port, router, tls)
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
        report = collect(gargs.root, dry_run=gargs.dry_run, grace=gargs.grace if gargs.online else 0.0)
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
