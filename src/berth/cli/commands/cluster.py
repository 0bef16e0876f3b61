"""`berth cluster manage|join|demo`: handed to `python -m berth.cluster.main` (the manager serves the
Engine API, and the CLI never imports the API layer)."""

from __future__ import annotations

import os
import sys

import click


@click.command("cluster", context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                            "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def cluster(args: tuple[str, ...]) -> None:
    """Manage a cluster of berthd nodes: manage, join, demo"""
    argv = [sys.executable, "-m", "berth.cluster.main", *args]
    sys.stdout.flush()
    os.execv(sys.executable, argv)
