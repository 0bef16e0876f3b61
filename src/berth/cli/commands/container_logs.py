"""`berth logs`: the container's log stream, demultiplexed unless the container has a TTY."""

from __future__ import annotations

import click

from berth.cli.common import client
from berth.cli.errors import Failure


@click.command("logs", short_help="Fetch the logs of a container")
@click.option("--details", is_flag=True, help="Show extra details provided to logs")
@click.option("-f", "--follow", is_flag=True, help="Follow log output")
@click.option("--since", help="Show logs since timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m)")
@click.option(
    "-n", "--tail", default="all", help='Number of lines to show from the end of the logs (default "all")'
)
@click.option("-t", "--timestamps", is_flag=True, help="Show timestamps")
@click.option(
    "--until", help="Show logs before a timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m)"
)
@click.argument("container")
def logs(
    details: bool,
    follow: bool,
    since: str | None,
    tail: str,
    timestamps: bool,
    until: str | None,
    container: str,
) -> None:
    """Fetch the logs of a container"""
    from berth.cli.streams import copy_output
    from berth.common.timefilter import api_time

    try:
        since_arg, until_arg = api_time(since), api_time(until)
    except ValueError as exc:
        raise Failure(str(exc), 125) from exc
    api = client()
    # The stream's framing depends on the container's TTY setting, which only inspect tells.
    info = api.containers.inspect(container)
    tty = bool((info.get("Config") or {}).get("Tty"))
    resp = api.containers.logs(
        info["Id"],
        follow=follow,
        since=since_arg,
        until=until_arg,
        timestamps=timestamps,
        tail=tail,
        details=details,
    )
    try:
        copy_output(resp, tty=tty)
    finally:
        resp.close()
