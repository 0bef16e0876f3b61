"""Read-only container views: ps, top, port."""

from __future__ import annotations

import sys
import time

import click

from berth.cli.common import client, parse_filters
from berth.cli.errors import Failure
from berth.cli.format.render import header_row, render_rows
from berth.cli.format.table import align
from berth.cli.format.views import PS_HEADERS, PS_TABLE, container_row


@click.command("ps", short_help="List containers")
@click.option("-a", "--all", "all_", is_flag=True, help="Show all containers (default shows just running)")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter output based on conditions provided")
@click.option("--format", "fmt", default="", help="Format output using a custom template")
@click.option(
    "-n", "--last", type=int, default=-1, help="Show n last created containers (includes all states)"
)
@click.option("-l", "--latest", is_flag=True, help="Show the latest created container (includes all states)")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output")
@click.option("-q", "--quiet", is_flag=True, help="Only display container IDs")
@click.option("-s", "--size", is_flag=True, help="Display total file sizes")
def ps(
    all_: bool,
    filters: tuple[str, ...],
    fmt: str,
    last: int,
    latest: bool,
    no_trunc: bool,
    quiet: bool,
    size: bool,
) -> None:
    """List containers"""
    limit = 1 if latest else (last if last > 0 else None)
    if quiet:
        fmt = "{{.ID}}"
    # docker computes sizes whenever the output would show them, not only with -s.
    want_size = size or ".Size" in fmt or fmt in ("json", "{{json .}}")
    containers = client().containers.list(
        all=all_ or limit is not None, limit=limit, size=want_size, filters=parse_filters(filters)
    )
    now = time.time()
    rows = [container_row(c, now, trunc=not no_trunc) for c in containers]
    default = PS_TABLE + ("\t{{.Size}}" if size else "")
    sys.stdout.write(render_rows(fmt, rows, header_row(PS_HEADERS, ["Label"]), default))


@click.command(
    "top",
    context_settings={"ignore_unknown_options": True},
    short_help="Display the running processes of a container",
)
@click.argument("container")
@click.argument("ps_args", nargs=-1, type=click.UNPROCESSED)
def top(container: str, ps_args: tuple[str, ...]) -> None:
    """Display the running processes of a container"""
    result = client().containers.top(container, " ".join(ps_args) or None)
    lines = ["\t".join(result.get("Titles") or [])]
    lines += ["\t".join(proc) for proc in result.get("Processes") or []]
    sys.stdout.write(align("\n".join(lines), min_width=20) + "\n")


@click.command("port", short_help="List port mappings or a specific mapping for the container")
@click.argument("container")
@click.argument("private_port", required=False)
def port(container: str, private_port: str | None) -> None:
    """List port mappings or a specific mapping for the container"""
    info = client().containers.inspect(container)
    ports = (info.get("NetworkSettings") or {}).get("Ports") or {}
    if private_port:
        key = private_port if "/" in private_port else f"{private_port}/tcp"
        bindings = ports.get(key)
        if not bindings:
            raise Failure(f"Error: No public port '{key}' published for {container}", 1)
        for b in bindings:
            click.echo(_host_port(b))
        return
    for key in sorted(ports, key=_port_sort_key):
        for b in ports[key] or []:
            click.echo(f"{key} -> {_host_port(b)}")


def _host_port(binding: dict[str, str]) -> str:
    ip = binding.get("HostIp") or "0.0.0.0"
    return f"[{ip}]:{binding.get('HostPort', '')}" if ":" in ip else f"{ip}:{binding.get('HostPort', '')}"


def _port_sort_key(key: str) -> tuple[int, str]:
    number, _, proto = key.partition("/")
    return (int(number) if number.isdigit() else 0, proto)
