"""Helpers every command module shares: the client, filters, JSON output, per-name loops."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import click

from berth.cli.errors import Failure, describe
from berth.client.errors import ClientError, DaemonUnreachable

if TYPE_CHECKING:
    from berth.client.api import APIClient


class GoBool(click.ParamType):
    """A boolean flag value as pflag spells it: `-H=false` arrives here as "=false"."""

    name = "boolean"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> bool:
        if isinstance(value, bool):
            return value
        text = str(value).removeprefix("=").lower()
        if text in ("1", "t", "true"):
            return True
        if text in ("0", "f", "false"):
            return False
        self.fail(f'invalid argument "{value}": parse error', param, ctx)


GO_BOOL = GoBool()


def client(ctx: click.Context | None = None) -> APIClient:
    from berth.cli.app import Obj

    ctx = ctx or click.get_current_context()
    obj = ctx.find_object(Obj)
    if obj is None:  # a command invoked on its own, as in unit tests
        obj = Obj(None)
    return obj.client


def parse_filters(values: Iterable[str]) -> dict[str, list[str]]:
    """`--filter key=value` (repeatable) into the API's `{"key": ["value", ...]}` map."""
    filters: dict[str, list[str]] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            raise Failure(
                f'invalid argument "{item}" for "-f, --filter" flag: bad format of filter (expected name=value)',
                125,
            )
        filters.setdefault(key.strip().lower(), []).append(value)
    return filters


def print_json(value: Any) -> None:
    """Indented like docker's inspect output (4 spaces, UTF-8 kept, no trailing spaces)."""
    sys.stdout.write(json.dumps(value, indent=4, ensure_ascii=False) + "\n")


def for_each(names: Iterable[str], action: Callable[[str], object], echo: bool = True) -> list[str]:
    """Apply `action` to each name, printing it on success and the error otherwise.

    Returns the names that failed, so the caller can choose docker's summary line and status.
    """
    failed: list[str] = []
    for name in names:
        try:
            action(name)
        except DaemonUnreachable:
            raise
        except ClientError as exc:
            print(describe(exc), file=sys.stderr)
            failed.append(name)
            continue
        if echo:
            sys.stdout.write(name + "\n")
            sys.stdout.flush()
    return failed


def fail_if(failed: list[str], summary: str | None = None) -> None:
    if failed:
        raise Failure(summary, 1)
