"""`berth inspect` (containers, then images), `container inspect` and `image inspect`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from berth.cli.common import client, print_json
from berth.cli.errors import Failure, describe
from berth.client.errors import ClientError


def _inspect_all(
    names: tuple[str, ...], lookups: list[Callable[[str], Any]], fmt: str | None, not_found: str | None
) -> None:
    """Print found objects (JSON array or one formatted line each), then fail for the missing ones."""
    found: list[Any] = []
    errors: list[str] = []
    for name in names:
        try:
            found.append(_first(name, lookups))
        except ClientError as exc:
            errors.append(f"{not_found}{name}" if not_found and exc.status == 404 else describe(exc))
    _emit(found, fmt)
    if errors:
        raise Failure("\n".join(errors), 1)


def _first(name: str, lookups: list[Callable[[str], Any]]) -> Any:
    """The first object type that knows `name`; a non-404 error stops the search."""
    for i, lookup in enumerate(lookups):
        try:
            return lookup(name)
        except ClientError as exc:
            if exc.status != 404 or i == len(lookups) - 1:
                raise
    raise AssertionError("no lookups")


def _emit(found: list[Any], fmt: str | None) -> None:
    if fmt is None or fmt == "":
        print_json(found)
        return
    from berth.cli.format.template import Template, TemplateError, go_json

    if fmt == "json":
        fmt = "{{json .}}"
    try:
        tmpl = Template(fmt)
    except TemplateError as exc:
        raise Failure(f"template parsing error: {exc}", 1) from exc
    for obj in found:
        # json rather than go_json for the whole-object case keeps inspect's own key order.
        sys.stdout.write((go_json(obj) if fmt == "{{json .}}" else tmpl.render(obj)) + "\n")


_TYPE = click.Choice(["container", "image"])


@click.command("inspect", short_help="Return low-level information on berth objects")
@click.option("-f", "--format", "fmt", help="Format output using a custom template")
@click.option("-s", "--size", is_flag=True, help="Display total file sizes if the type is container")
@click.option("--type", "type_", type=_TYPE, help="Return JSON for specified type")
@click.argument("names", nargs=-1, required=True)
def inspect(fmt: str | None, size: bool, type_: str | None, names: tuple[str, ...]) -> None:
    """Return low-level information on berth objects"""
    api = client()
    lookups: list[Callable[[str], Any]] = []
    if type_ in (None, "container"):
        lookups.append(lambda n: api.containers.inspect(n, size=size))
    if type_ in (None, "image"):
        lookups.append(api.images.inspect)
    _inspect_all(names, lookups, fmt, "Error: No such object: " if type_ is None else None)


@click.command("inspect", short_help="Display detailed information on one or more containers")
@click.option("-f", "--format", "fmt", help="Format output using a custom template")
@click.option("-s", "--size", is_flag=True, help="Display total file sizes")
@click.argument("names", nargs=-1, required=True)
def container_inspect(fmt: str | None, size: bool, names: tuple[str, ...]) -> None:
    """Display detailed information on one or more containers"""
    api = client()
    _inspect_all(names, [lambda n: api.containers.inspect(n, size=size)], fmt, None)


@click.command("inspect", short_help="Display detailed information on one or more images")
@click.option("-f", "--format", "fmt", help="Format output using a custom template")
@click.argument("names", nargs=-1, required=True)
def image_inspect(fmt: str | None, names: tuple[str, ...]) -> None:
    """Display detailed information on one or more images"""
    _inspect_all(names, [client().images.inspect], fmt, None)
