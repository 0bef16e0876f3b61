"""Image listing and naming: images, rmi, tag, history, image prune."""

from __future__ import annotations

import sys
import time
from datetime import UTC
from typing import Any

import click

from berth.cli.common import GO_BOOL, client, fail_if, parse_filters
from berth.cli.errors import Failure, describe
from berth.cli.format.humanize import human_duration, human_size
from berth.cli.format.render import header_row, render_rows
from berth.cli.format.template import Row
from berth.cli.format.views import (
    IMAGE_HEADERS,
    IMAGES_DIGESTS_TABLE,
    IMAGES_TABLE,
    ellipsis,
    image_rows,
    short_id,
)
from berth.client.errors import ClientError


@click.command("images", short_help="List images")
@click.option("-a", "--all", "all_", is_flag=True, help="Show all images (default hides intermediate images)")
@click.option("--digests", is_flag=True, help="Show digests")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter output based on conditions provided")
@click.option("--format", "fmt", default="", help="Format output using a custom template")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs")
@click.argument("repository", required=False)
def images(
    all_: bool,
    digests: bool,
    filters: tuple[str, ...],
    fmt: str,
    no_trunc: bool,
    quiet: bool,
    repository: str | None,
) -> None:
    """List images"""
    flt = parse_filters(filters)
    if repository:
        flt.setdefault("reference", []).append(repository)
    found = client().images.list(all=all_, filters=flt, digests=digests)
    now = time.time()
    if quiet:
        # Like docker: one ID per row, so an image with several tags is listed several times.
        fmt = "{{.ID}}"
    rows = [row for img in found for row in image_rows(img, now, trunc=not no_trunc, digests=digests)]
    default = IMAGES_DIGESTS_TABLE if digests else IMAGES_TABLE
    sys.stdout.write(render_rows(fmt, rows, header_row(IMAGE_HEADERS), default))


@click.command("rmi", short_help="Remove one or more images")
@click.option("-f", "--force", is_flag=True, help="Force removal of the image")
@click.option("--no-prune", is_flag=True, help="Do not delete untagged parents")
@click.argument("images_", metavar="IMAGE...", nargs=-1, required=True)
def rmi(force: bool, no_prune: bool, images_: tuple[str, ...]) -> None:
    """Remove one or more images"""
    api = client()
    failed: list[str] = []
    for name in images_:
        try:
            deleted = api.images.remove(name, force=force, noprune=no_prune)
        except ClientError as exc:
            print(describe(exc), file=sys.stderr)
            failed.append(name)
            continue
        for item in deleted:
            if item.get("Untagged"):
                click.echo(f"Untagged: {item['Untagged']}")
            if item.get("Deleted"):
                click.echo(f"Deleted: {item['Deleted']}")
    fail_if(failed)


@click.command("tag", short_help="Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE")
@click.argument("source")
@click.argument("target")
def tag(source: str, target: str) -> None:
    """Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE"""
    repo, tag_ = _split_repo_tag(target)
    if "@" in target:
        raise Failure("refusing to create a tag with a digest reference", 1)
    client().images.tag(source, repo, tag_ or "latest")


def _split_repo_tag(ref: str) -> tuple[str, str | None]:
    slash, colon = ref.rfind("/"), ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1 :]
    return ref, None


HISTORY_HEADERS = {
    "ID": "IMAGE",
    "CreatedSince": "CREATED",
    "CreatedAt": "CREATED AT",
    "CreatedBy": "CREATED BY",
    "Size": "SIZE",
    "Comment": "COMMENT",
}


def history_row(entry: dict[str, Any], now: float, trunc: bool, human: bool) -> Row:
    from datetime import datetime

    created = float(entry.get("Created", 0))
    iid = entry.get("Id", "")
    created_by = entry.get("CreatedBy", "").replace("\t", " ")
    at = datetime.fromtimestamp(created, tz=UTC).astimezone()
    at_text = at.isoformat().replace("+00:00", "Z")
    return Row(
        {
            "Comment": entry.get("Comment", ""),
            "CreatedAt": at_text,
            "CreatedBy": ellipsis(created_by, 45) if trunc else created_by,
            "CreatedSince": human_duration(now - created) + " ago" if human else at_text,
            "ID": iid if iid == "<missing>" or not trunc else short_id(iid),
            "Size": human_size(entry.get("Size", 0)) if human else str(entry.get("Size", 0)),
        }
    )


@click.command("history", short_help="Show the history of an image")
@click.option("--format", "fmt", default="", help="Format output using a custom template")
@click.option(
    "-H",
    "--human",
    type=GO_BOOL,
    default="true",
    is_flag=False,
    flag_value="true",
    help="Print sizes and dates in human readable format",
)
@click.option("--no-trunc", is_flag=True, help="Don't truncate output")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs")
@click.argument("image")
def history(fmt: str, human: bool, no_trunc: bool, quiet: bool, image: str) -> None:
    """Show the history of an image"""
    entries = client().images.history(image)
    now = time.time()
    rows = [history_row(e, now, not no_trunc, human) for e in entries]
    if quiet:
        fmt = "{{.ID}}"
    created = "{{.CreatedSince}}" if human else "{{.CreatedAt}}"
    default = f"table {{{{.ID}}}}\t{created}\t{{{{.CreatedBy}}}}\t{{{{.Size}}}}\t{{{{.Comment}}}}"
    sys.stdout.write(render_rows(fmt, rows, header_row(HISTORY_HEADERS), default))


@click.command("prune", short_help="Remove unused images")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all unused images, not just dangling ones")
@click.option("--filter", "filters", multiple=True, help='Provide filter values (e.g. "until=<timestamp>")')
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
def image_prune(all_: bool, filters: tuple[str, ...], force: bool) -> None:
    """Remove unused images"""
    if not force:
        warning = (
            "all images without at least one container associated to them" if all_ else "all dangling images"
        )
        click.echo(f"WARNING! This will remove {warning}.")
        if not click.confirm("Are you sure you want to continue?", default=False, prompt_suffix=" "):
            return
    flt = parse_filters(filters)
    flt["dangling"] = ["false" if all_ else "true"]
    report = client().images.prune(flt)
    deleted = report.get("ImagesDeleted") or []
    if deleted:
        click.echo("Deleted Images:")
        for item in deleted:
            for key in ("Untagged", "Deleted"):
                if item.get(key):
                    click.echo(f"{key.lower()}: {item[key]}")
        click.echo("")
    click.echo(f"Total reclaimed space: {human_size(report.get('SpaceReclaimed') or 0)}")
