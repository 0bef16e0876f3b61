"""Daemon-wide commands: version, info, events."""

from __future__ import annotations

import platform
import sys
from datetime import UTC, datetime
from typing import Any

import click

from berth import __version__
from berth.cli.common import client, parse_filters
from berth.cli.errors import Failure, describe
from berth.client.errors import ClientError, DaemonUnreachable


def _render(fmt: str, data: Any) -> None:
    from berth.cli.format.render import unescape
    from berth.cli.format.template import Template

    if fmt == "json":
        fmt = "{{json .}}"
    sys.stdout.write(Template(unescape(fmt)).render(data) + "\n")


def _lines(pairs: list[tuple[str, Any]], indent: str) -> str:
    width = max(len(k) for k, _ in pairs) + 2
    return "".join(f"{indent}{(k + ':').ljust(width)}{v}\n" for k, v in pairs)


def _tab_lines(pairs: list[tuple[str, Any]], indent: str) -> str:
    """`key:<TAB>value` lines; `version` aligns them all together like docker's tabwriter."""
    return "".join(f"{indent}{k}:\t{v}\n" for k, v in pairs)


_GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}


def _ansic(text: str) -> str:
    """Go's ANSIC layout ("Thu May  7 21:09:36 2026"), which docker uses for build times."""
    from berth.cli.format.humanize import parse_timestamp

    epoch = parse_timestamp(text)
    if epoch is None:
        return text
    return datetime.fromtimestamp(epoch, tz=UTC).astimezone().strftime("%a %b %e %H:%M:%S %Y")


def client_version(api_version: str | None) -> dict[str, Any]:
    from berth.client.api import CLIENT_MAX_API

    return {
        "Version": __version__,
        "ApiVersion": api_version or CLIENT_MAX_API,
        "DefaultAPIVersion": CLIENT_MAX_API,
        "PythonVersion": platform.python_version(),
        "Os": sys.platform,
        "Arch": _GO_ARCH.get(platform.machine(), platform.machine()),
        "Context": "default",
    }


@click.command("version", short_help="Show the berth version information")
@click.option("-f", "--format", "fmt", help="Format output using a custom template")
def version(fmt: str | None) -> None:
    """Show the berth version information"""
    api = client()
    server: dict[str, Any] | None = None
    error: Exception | None = None
    try:
        server = api.system.version()
        negotiated: str | None = api.api_version
    except (ClientError, DaemonUnreachable) as exc:
        error, negotiated = exc, None
    info = client_version(negotiated)
    if fmt:
        _render(fmt, {"Client": info, "Server": server})
    else:
        api_line = info["ApiVersion"]
        if negotiated and negotiated != info["DefaultAPIVersion"]:
            api_line += f" (downgraded from {info['DefaultAPIVersion']})"
        from berth.cli.format.table import align

        text = "Client:\n" + _tab_lines(
            [
                ("Version", info["Version"]),
                ("API version", api_line),
                ("Python version", info["PythonVersion"]),
                ("OS/Arch", f"{info['Os']}/{info['Arch']}"),
                ("Context", info["Context"]),
            ],
            " ",
        )
        if server is not None:
            text += "\nServer:\n" + _server_version(server)
        sys.stdout.write(align(text, min_width=20, padding=1))
    if error is not None:
        raise Failure(describe(error), 1)


def _server_version(server: dict[str, Any]) -> str:
    engine = [
        ("Version", server.get("Version", "")),
        (
            "API version",
            f"{server.get('ApiVersion', '')} (minimum version {server.get('MinAPIVersion', '')})",
        ),
        ("Go version", server.get("GoVersion", "")),
        ("Git commit", server.get("GitCommit", "")),
        ("Built", _ansic(server.get("BuildTime", ""))),
        ("OS/Arch", f"{server.get('Os', '')}/{server.get('Arch', '')}"),
        ("Experimental", str(server.get("Experimental", False)).lower()),
    ]
    out = " Engine:\n" + _tab_lines(engine, "  ")
    for comp in server.get("Components") or []:
        if comp.get("Name") == "Engine":
            continue
        pairs = [("Version", comp.get("Version", ""))]
        pairs += [(k, v) for k, v in sorted((comp.get("Details") or {}).items())]
        out += f" {comp.get('Name')}:\n" + _tab_lines(pairs, "  ")
    return out


@click.command("info", short_help="Display system-wide information")
@click.option("-f", "--format", "fmt", help="Format output using a custom template")
def info(fmt: str | None) -> None:
    """Display system-wide information"""
    from berth.cli.format.humanize import bytes_size

    data = client().system.info()
    if fmt:
        _render(fmt, {**data, "ClientInfo": {"Version": __version__, "Context": "default", "Debug": False}})
        return
    out = [
        "Client:\n",
        _lines([("Version", __version__), ("Context", "default"), ("Debug Mode", "false")], " "),
        "\n",
    ]
    out.append("Server:\n")
    out.append(f" Containers: {data.get('Containers', 0)}\n")
    for key in ("Running", "Paused", "Stopped"):
        out.append(f"  {key}: {data.get('Containers' + key, 0)}\n")
    out.append(f" Images: {data.get('Images', 0)}\n")
    out.append(f" Server Version: {data.get('ServerVersion', '')}\n")
    out.append(f" Storage Driver: {data.get('Driver', '')}\n")
    out += [f"  {k}: {v}\n" for k, v in data.get("DriverStatus") or []]
    for label, key in (
        ("Logging Driver", "LoggingDriver"),
        ("Cgroup Driver", "CgroupDriver"),
        ("Cgroup Version", "CgroupVersion"),
    ):
        out.append(f" {label}: {data.get(key, '')}\n")
    runtimes = " ".join(sorted(data.get("Runtimes") or {}))
    if runtimes:
        out.append(f" Runtimes: {runtimes}\n Default Runtime: {data.get('DefaultRuntime', '')}\n")
    for label, key in (
        ("Kernel Version", "KernelVersion"),
        ("Operating System", "OperatingSystem"),
        ("OSType", "OSType"),
        ("Architecture", "Architecture"),
        ("CPUs", "NCPU"),
    ):
        out.append(f" {label}: {data.get(key, '')}\n")
    out.append(f" Total Memory: {bytes_size(data.get('MemTotal') or 0)}\n")
    out.append(f" Name: {data.get('Name', '')}\n ID: {data.get('ID', '')}\n")
    out.append(f" Docker Root Dir: {data.get('DockerRootDir', '')}\n")
    out.append(f" Debug Mode: {str(bool(data.get('Debug'))).lower()}\n")
    out.append(f" Experimental: {str(bool(data.get('ExperimentalBuild'))).lower()}\n")
    out.append(f" Live Restore Enabled: {str(bool(data.get('LiveRestoreEnabled'))).lower()}\n")
    sys.stdout.write("".join(out) + "\n")
    for warning in data.get("Warnings") or []:
        print(warning, file=sys.stderr)


def pretty_event(event: dict[str, Any]) -> str:
    """`TIME TYPE ACTION ID (k=v, ...)` with nanosecond local time, as docker prints events."""
    nanos = event.get("timeNano") or int(event.get("time", 0)) * 1_000_000_000
    when = datetime.fromtimestamp(nanos // 1_000_000_000, tz=UTC).astimezone()
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos % 1_000_000_000:09d}"
    offset = when.strftime("%z")
    stamp += "Z" if offset in ("+0000", "") else f"{offset[:3]}:{offset[3:]}"
    actor = event.get("Actor") or {}
    line = f"{stamp} {event.get('Type', '')} {event.get('Action', '')} {actor.get('ID', '')}"
    attrs = actor.get("Attributes") or {}
    if attrs:
        line += " (" + ", ".join(f"{k}={v}" for k, v in sorted(attrs.items())) + ")"
    return line + "\n"


@click.command("events", short_help="Get real time events from the server")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter output based on conditions provided")
@click.option("--format", "fmt", default="", help="Format output using a custom template")
@click.option("--since", help="Show all events created since timestamp")
@click.option("--until", help="Stream events until this timestamp")
def events(filters: tuple[str, ...], fmt: str, since: str | None, until: str | None) -> None:
    """Get real time events from the server"""
    from berth.cli.format.render import unescape
    from berth.cli.format.template import Template
    from berth.client.stream import iter_json
    from berth.common.timefilter import api_time

    try:
        since_arg, until_arg = api_time(since), api_time(until)
    except ValueError as exc:
        raise Failure(str(exc), 125) from exc
    tmpl = Template(unescape("{{json .}}" if fmt == "json" else fmt)) if fmt else None
    resp = client().system.events(since=since_arg, until=until_arg, filters=parse_filters(filters))
    try:
        for event in iter_json(resp):
            sys.stdout.write(tmpl.render(event) + "\n" if tmpl else pretty_event(event))
            sys.stdout.flush()
    finally:
        resp.close()


@click.command("dial-stdio", short_help="Proxy the stdio stream to the daemon connection")
def dial_stdio() -> None:
    """Proxy the stdio stream to the daemon connection. Should not be invoked manually.

    What the docker CLI runs on the far side of `DOCKER_HOST=ssh://...` (as `docker [--host URL]
    system dial-stdio`): bytes from stdin go to the daemon's socket, the daemon's bytes to stdout.
    """
    import os
    import socket
    import threading

    from berth.cli.app import Obj
    from berth.client.transport import parse_host, resolve_host

    obj = click.get_current_context().find_object(Obj)
    try:
        endpoint = parse_host(resolve_host(obj.host if obj else None, os.environ))
        if endpoint.socket_path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(endpoint.socket_path)
        elif endpoint.tcp_host is not None:
            sock = socket.create_connection((endpoint.tcp_host, endpoint.tcp_port))
        else:
            raise Failure("dial-stdio needs a unix:// or tcp:// daemon address", 1)
    except (OSError, ValueError) as exc:
        raise Failure(f"Cannot connect to the berth daemon: {exc}", 1) from exc

    def upstream() -> None:
        # stdin -> daemon; at stdin's EOF half-close, so the daemon still answers what it was sent
        try:
            while data := os.read(0, 65536):
                sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    threading.Thread(target=upstream, daemon=True).start()
    try:
        while data := sock.recv(65536):
            view = memoryview(data)
            while view:
                view = view[os.write(1, view):]
    except OSError:  # the reader went away (EPIPE) or the daemon reset the connection
        pass
    os._exit(0)  # the stdin thread may sit in read(): the connection is over either way
