"""`berth network create/ls/inspect/rm/prune/connect/disconnect`."""

from __future__ import annotations

import sys
from typing import Any

import click

from berth.cli.common import client, fail_if, for_each, parse_filters
from berth.cli.errors import Failure, daemon_error
from berth.cli.format.render import header_row, render_rows
from berth.cli.format.template import Row
from berth.client.errors import ClientError

NETWORK_HEADERS = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
                   "IPv6": "IPV6", "Internal": "INTERNAL", "Labels": "LABELS", "CreatedAt": "CREATED AT"}
NETWORKS_TABLE = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"


def _key_values(items: tuple[str, ...], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise Failure(f'invalid argument "{item}" for "--{what}" flag: invalid key', 125)
        out[key] = value
    return out


@click.command("create", short_help="Create a network")
@click.option("-d", "--driver", default="bridge", help="Driver to manage the Network")
@click.option("--subnet", multiple=True, help="Subnet in CIDR format that represents a network segment")
@click.option("--gateway", multiple=True, help="IPv4 or IPv6 Gateway for the master subnet")
@click.option("--ip-range", multiple=True, help="Allocate container ip from a sub-range")
@click.option("--internal", is_flag=True, help="Restrict external access to the network")
@click.option("--ipv6", is_flag=True, help="Enable IPv6 networking")
@click.option("--attachable", is_flag=True, help="Enable manual container attachment")
@click.option("--label", "labels", multiple=True, help="Set metadata on a network")
@click.option("-o", "--opt", "opts", multiple=True, help="Set driver specific options")
@click.argument("name")
def create(driver: str, subnet: tuple[str, ...], gateway: tuple[str, ...], ip_range: tuple[str, ...],
           internal: bool, ipv6: bool, attachable: bool, labels: tuple[str, ...], opts: tuple[str, ...],
           name: str) -> None:
    """Create a network"""
    if (gateway or ip_range) and not subnet:
        raise Failure("Error response from daemon: --gateway and --ip-range need --subnet", 1)
    configs: list[dict[str, str]] = []
    for i, sub in enumerate(subnet):
        cfg = {"Subnet": sub}
        if i < len(gateway):
            cfg["Gateway"] = gateway[i]
        if i < len(ip_range):
            cfg["IPRange"] = ip_range[i]
        configs.append(cfg)
    body: dict[str, Any] = {"Name": name, "Driver": driver, "Internal": internal, "Attachable": attachable,
                            "EnableIPv6": ipv6,
                            "IPAM": {"Driver": "default", "Config": configs},
                            "Options": _key_values(opts, "opt"), "Labels": _key_values(labels, "label")}
    try:
        out = client().networks.create(body)
    except ClientError as exc:
        raise Failure(daemon_error(exc), 1) from exc
    click.echo(out["Id"])


def _row(n: dict[str, Any], trunc: bool) -> Row:
    labels = n.get("Labels") or {}
    return Row({"ID": n["Id"][:12] if trunc else n["Id"], "Name": n.get("Name", ""),
                "Driver": n.get("Driver", ""), "Scope": n.get("Scope", ""),
                "IPv6": str(bool(n.get("EnableIPv6"))).lower(), "Internal": str(bool(n.get("Internal"))).lower(),
                "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
                "CreatedAt": n.get("Created", "")})


@click.command("ls", short_help="List networks")
@click.option("-f", "--filter", "filters", multiple=True, help="Provide filter values (e.g. 'driver=bridge')")
@click.option("--format", "fmt", default="", help="Format output using a custom template")
@click.option("--no-trunc", is_flag=True, help="Do not truncate the output")
@click.option("-q", "--quiet", is_flag=True, help="Only display network IDs")
def ls(filters: tuple[str, ...], fmt: str, no_trunc: bool, quiet: bool) -> None:
    """List networks"""
    found = client().networks.list(parse_filters(filters))
    if quiet:
        fmt = "{{.ID}}"
    rows = [_row(n, not no_trunc) for n in sorted(found, key=lambda n: n.get("Name", ""))]
    sys.stdout.write(render_rows(fmt, rows, header_row(NETWORK_HEADERS), NETWORKS_TABLE))


@click.command("inspect", short_help="Display detailed information on one or more networks")
@click.option("-f", "--format", "fmt", help="Format output using a custom template")
@click.argument("names", nargs=-1, required=True)
def inspect(fmt: str | None, names: tuple[str, ...]) -> None:
    """Display detailed information on one or more networks"""
    from berth.cli.commands.inspect import _inspect_all

    _inspect_all(names, [client().networks.inspect], fmt, None)


@click.command("rm", short_help="Remove one or more networks")
@click.option("-f", "--force", is_flag=True, help="Do not error if the network does not exist")
@click.argument("names", nargs=-1, required=True)
def rm(force: bool, names: tuple[str, ...]) -> None:
    """Remove one or more networks"""
    api = client()

    def one(name: str) -> None:
        try:
            api.networks.remove(name)
        except ClientError as exc:
            if not (force and exc.status == 404):
                raise

    fail_if(for_each(names, one))


@click.command("prune", short_help="Remove all unused networks")
@click.option("--filter", "filters", multiple=True, help='Provide filter values (e.g. "until=<timestamp>")')
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
def prune(filters: tuple[str, ...], force: bool) -> None:
    """Remove all unused networks"""
    if not force:
        click.echo("WARNING! This will remove all custom networks not used by at least one container.")
        if not click.confirm("Are you sure you want to continue?", default=False, prompt_suffix=" "):
            return
    report = client().networks.prune(parse_filters(filters))
    deleted = report.get("NetworksDeleted") or []
    if deleted:
        click.echo("Deleted Networks:")
        for name in deleted:
            click.echo(name)


@click.command("connect", short_help="Connect a container to a network")
@click.option("--ip", help="IPv4 address (e.g., \"172.30.100.104\")")
@click.option("--ip6", help="IPv6 address (e.g., \"2001:db8::33\")")
@click.option("--alias", "aliases", multiple=True, help="Add network-scoped alias for the container")
@click.argument("network")
@click.argument("container")
def connect(ip: str | None, ip6: str | None, aliases: tuple[str, ...], network: str, container: str) -> None:
    """Connect a container to a network"""
    cfg: dict[str, Any] = {}
    if ip or ip6:
        cfg["IPAMConfig"] = {k: v for k, v in (("IPv4Address", ip), ("IPv6Address", ip6)) if v}
    if aliases:
        cfg["Aliases"] = list(aliases)
    try:
        client().networks.connect(network, container, cfg)
    except ClientError as exc:
        raise Failure(daemon_error(exc), 1) from exc


@click.command("disconnect", short_help="Disconnect a container from a network")
@click.option("-f", "--force", is_flag=True, help="Force the container to disconnect from a network")
@click.argument("network")
@click.argument("container")
def disconnect(force: bool, network: str, container: str) -> None:
    """Disconnect a container from a network"""
    try:
        client().networks.disconnect(network, container, force)
    except ClientError as exc:
        raise Failure(daemon_error(exc), 1) from exc
