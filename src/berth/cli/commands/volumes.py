"""`berth volume create/ls/inspect/rm/prune`."""

from __future__ import annotations

import sys

import click

from berth.cli.common import client, fail_if, for_each, parse_filters
from berth.cli.errors import Failure, daemon_error
from berth.cli.format.render import header_row, render_rows
from berth.cli.format.template import Row
from berth.client.errors import ClientError

VOLUME_HEADERS = {"Driver": "DRIVER", "Name": "VOLUME NAME", "Mountpoint": "MOUNTPOINT", "Scope": "SCOPE",
                  "Labels": "LABELS", "Links": "LINKS", "Size": "SIZE", "CreatedAt": "CREATED"}
VOLUMES_TABLE = "table {{.Driver}}\t{{.Name}}"


def _key_values(items: tuple[str, ...], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise Failure(f'invalid argument "{item}" for "--{what}" flag: invalid key', 125)
        out[key] = value
    return out


@click.command("create", short_help="Create a volume")
@click.option("-d", "--driver", default="local", help="Specify volume driver name")
@click.option("--label", "labels", multiple=True, help="Set metadata for a volume")
@click.option("-o", "--opt", "opts", multiple=True, help="Set driver specific options")
@click.argument("name", required=False)
def create(driver: str, labels: tuple[str, ...], opts: tuple[str, ...], name: str | None) -> None:
    """Create a volume"""
    try:
        vol = client().volumes.create(name or "", driver, _key_values(opts, "opt"), _key_values(labels, "label"))
    except ClientError as exc:
        raise Failure(daemon_error(exc), 1) from exc
    click.echo(vol["Name"])


def _row(vol: dict[str, object]) -> Row:
    labels = vol.get("Labels") or {}
    assert isinstance(labels, dict)
    return Row({"Driver": vol.get("Driver", ""), "Name": vol.get("Name", ""),
                "Mountpoint": vol.get("Mountpoint", ""), "Scope": vol.get("Scope", ""),
                "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
                "CreatedAt": vol.get("CreatedAt", ""), "Links": "N/A", "Size": "N/A"})


@click.command("ls", short_help="List volumes")
@click.option("-f", "--filter", "filters", multiple=True, help="Provide filter values (e.g. 'dangling=true')")
@click.option("--format", "fmt", default="", help="Format output using a custom template")
@click.option("-q", "--quiet", is_flag=True, help="Only display volume names")
def ls(filters: tuple[str, ...], fmt: str, quiet: bool) -> None:
    """List volumes"""
    found = client().volumes.list(parse_filters(filters)).get("Volumes") or []
    if quiet:
        fmt = "{{.Name}}"
    rows = [_row(v) for v in sorted(found, key=lambda v: v.get("Name", ""))]
    sys.stdout.write(render_rows(fmt, rows, header_row(VOLUME_HEADERS), VOLUMES_TABLE))


@click.command("inspect", short_help="Display detailed information on one or more volumes")
@click.option("-f", "--format", "fmt", help="Format output using a custom template")
@click.argument("names", nargs=-1, required=True)
def inspect(fmt: str | None, names: tuple[str, ...]) -> None:
    """Display detailed information on one or more volumes"""
    from berth.cli.commands.inspect import _inspect_all

    _inspect_all(names, [client().volumes.inspect], fmt, None)


@click.command("rm", short_help="Remove one or more volumes")
@click.option("-f", "--force", is_flag=True, help="Force the removal of one or more volumes")
@click.argument("names", nargs=-1, required=True)
def rm(force: bool, names: tuple[str, ...]) -> None:
    """Remove one or more volumes"""
    api = client()
    fail_if(for_each(names, lambda n: api.volumes.remove(n, force=force)))


@click.command("prune", short_help="Remove unused local volumes")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all unused volumes, not just anonymous ones")
@click.option("--filter", "filters", multiple=True, help='Provide filter values (e.g. "label=<label>")')
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
def prune(all_: bool, filters: tuple[str, ...], force: bool) -> None:
    """Remove unused local volumes"""
    if not force:
        click.echo("WARNING! This will remove anonymous local volumes not used by at least one container."
                   if not all_ else "WARNING! This will remove all local volumes not used by at least one container.")
        if not click.confirm("Are you sure you want to continue?", default=False, prompt_suffix=" "):
            return
    flt = parse_filters(filters)
    if all_:
        flt["all"] = ["true"]
    from berth.cli.format.humanize import human_size

    report = client().volumes.prune(flt)
    deleted = report.get("VolumesDeleted") or []
    if deleted:
        click.echo("Deleted Volumes:")
        for name in deleted:
            click.echo(name)
        click.echo("")
    click.echo(f"Total reclaimed space: {human_size(report.get('SpaceReclaimed') or 0)}")
