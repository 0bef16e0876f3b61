"""Moving images in and out as tar archives: save, load, import."""

from __future__ import annotations

import os
import shutil
import sys
from typing import IO

import click

from berth.cli.common import client
from berth.cli.errors import Failure


@click.command("save", short_help="Save one or more images to a tar archive (streamed to STDOUT by default)")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to a file, instead of STDOUT")
@click.argument("images", nargs=-1, required=True)
def save(output: str | None, images: tuple[str, ...]) -> None:
    """Save one or more images to a tar archive (streamed to STDOUT by default)"""
    if output is None and sys.stdout.isatty():
        raise Failure("cowardly refusing to save to a terminal. Use the -o flag or redirect", 1)
    resp = client().images.get(list(images))
    try:
        if output is None:
            shutil.copyfileobj(resp, sys.stdout.buffer, 1 << 20)
            sys.stdout.buffer.flush()
            return
        # Write beside the target and rename, so a failed save never leaves a truncated archive.
        tmp = f"{output}.berth-tmp-{os.getpid()}"
        try:
            with open(tmp, "wb") as fh:
                shutil.copyfileobj(resp, fh, 1 << 20)
            os.replace(tmp, output)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    finally:
        resp.close()


@click.command("load", short_help="Load an image from a tar archive or STDIN")
@click.option(
    "-i",
    "--input",
    "input_",
    type=click.Path(dir_okay=False, exists=True),
    help="Read from tar archive file, instead of STDIN",
)
@click.option("-q", "--quiet", is_flag=True, help="Suppress the load output")
def load(input_: str | None, quiet: bool) -> None:
    """Load an image from a tar archive or STDIN"""
    from berth.cli.progress import show_messages

    if input_ is None and sys.stdin.isatty():
        raise Failure("requested load from stdin, but stdin is empty", 1)
    source: IO[bytes] = open(input_, "rb") if input_ else sys.stdin.buffer  # noqa: SIM115
    try:
        # Progress bars are for terminals; docker asks for quiet output otherwise.
        resp = client().images.load(source, quiet=quiet or not sys.stdout.isatty())
        try:
            show_messages(resp, None if quiet else sys.stdout)
        finally:
            resp.close()
    finally:
        if input_:
            source.close()


@click.command("import", short_help="Import the contents from a tarball to create a filesystem image")
@click.option(
    "-c", "--change", "changes", multiple=True, help="Apply Dockerfile instruction to the created image"
)
@click.option("-m", "--message", help="Set commit message for imported image")
@click.option("--platform", help="Set platform if server is multi-platform capable")
@click.argument("source")
@click.argument("reference", required=False)
def import_(
    changes: tuple[str, ...], message: str | None, platform: str | None, source: str, reference: str | None
) -> None:
    """Import the contents from a tarball to create a filesystem image"""
    from berth.cli.progress import show_messages

    repo, tag = None, None
    if reference:
        slash, colon = reference.rfind("/"), reference.rfind(":")
        repo, tag = (reference[:colon], reference[colon + 1 :]) if colon > slash else (reference, None)
    body: IO[bytes] | None = None
    src = "-"
    if source == "-":
        body = sys.stdin.buffer
    elif source.startswith(("http://", "https://")):
        src = source  # the daemon fetches it
    else:
        try:
            body = open(source, "rb")  # noqa: SIM115
        except OSError as exc:
            raise Failure(f"open {source}: {(exc.strerror or str(exc)).lower()}", 1) from exc
    try:
        resp = client().images.create_from_src(
            src, body, repo=repo, tag=tag, message=message, changes=list(changes), platform=platform
        )
        try:
            show_messages(resp)
        finally:
            resp.close()
    finally:
        if body is not None and source != "-":
            body.close()
