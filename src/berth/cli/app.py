"""The click application: global options, the lazily loaded command table, per-invocation state.

Only the table below is read at start-up: a command's module (and with it http.client and json)
is imported when that command runs, so `berth --help` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

import click

from berth import __version__

if TYPE_CHECKING:
    from berth.client.api import APIClient

VERSION_TEXT = f"berth version {__version__}"

# name -> (module under berth.cli.commands, attribute, one-line help). Order is the help order;
# an empty help marks an alias.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": ("container_run", "run", "Create and run a new container from an image"),
    "exec": ("container_exec", "exec_", "Execute a command in a running container"),
    "ps": ("container_info", "ps", "List containers"),
    "build": ("image_build", "build", "Build an image from a Dockerfile"),
    "images": ("images", "images", "List images"),
    "version": ("system", "version", "Show the berth version information"),
    "info": ("system", "info", "Display system-wide information"),
    "attach": (
        "container_attach",
        "attach",
        "Attach local standard input, output, and error streams to a running container",
    ),
    "create": ("container_run", "create", "Create a new container"),
    "start": ("container_life", "start", "Start one or more stopped containers"),
    "stop": ("container_life", "stop", "Stop one or more running containers"),
    "restart": ("container_life", "restart", "Restart one or more containers"),
    "kill": ("container_life", "kill", "Kill one or more running containers"),
    "rm": ("container_life", "rm", "Remove one or more containers"),
    "wait": (
        "container_life",
        "wait",
        "Block until one or more containers stop, then print their exit codes",
    ),
    "rename": ("container_life", "rename", "Rename a container"),
    "logs": ("container_logs", "logs", "Fetch the logs of a container"),
    "inspect": ("inspect", "inspect", "Return low-level information on berth objects"),
    "top": ("container_info", "top", "Display the running processes of a container"),
    "port": ("container_info", "port", "List port mappings or a specific mapping for the container"),
    "rmi": ("images", "rmi", "Remove one or more images"),
    "tag": ("images", "tag", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE"),
    "history": ("images", "history", "Show the history of an image"),
    "save": ("image_io", "save", "Save one or more images to a tar archive (streamed to STDOUT by default)"),
    "load": ("image_io", "load", "Load an image from a tar archive or STDIN"),
    "import": ("image_io", "import_", "Import the contents from a tarball to create a filesystem image"),
    "events": ("system", "events", "Get real time events from the server"),
    "pull": ("registry", "pull", "Download an image from a registry"),
    "push": ("registry", "push", "Upload an image to a registry"),
    "login": ("registry", "login", "Authenticate to a registry"),
    "logout": ("registry", "logout", "Log out from a registry"),
    "registry": ("registry", "registry", "Run a registry server: serve, gc"),
    "commit": ("container_fs", "commit", "Create a new image from a container's changes"),
    "cp": ("container_fs", "cp", "Copy files/folders between a container and the local filesystem"),
    "diff": ("container_fs", "diff", "Inspect changes to files or directories on a container's filesystem"),
    "export": ("container_fs", "export", "Export a container's filesystem as a tar archive"),
    "stats": ("container_res", "stats", "Display a live stream of container(s) resource usage statistics"),
    "update": ("container_res", "update", "Update configuration of one or more containers"),
    "pause": ("container_res", "pause", "Pause all processes within one or more containers"),
    "unpause": ("container_res", "unpause", "Unpause all processes within one or more containers"),
    "container": ("groups", "container", "Manage containers"),
    "image": ("groups", "image", "Manage images"),
    "system": ("groups", "system", "Manage berth"),
    "volume": ("groups", "volume", "Manage volumes"),
    "network": ("groups", "network", "Manage networks"),
    "compose": ("groups", "compose", "Define and run multi-container applications"),
    "machine": ("groups", "machine", "Manage machines (hosts running berthd) declared in machines.yml"),
    "cluster": ("cluster", "cluster", "Manage a cluster of nodes: manage, join, demo"),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when looked up by name."""

    def __init__(self, *args: object, table: dict[str, tuple[str, str, str]], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.table = table

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.table)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = self.table.get(cmd_name)
        if entry is None:
            return None
        module = importlib.import_module(f"berth.cli.commands.{entry[0]}")
        command: click.Command = getattr(module, entry[1])
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Help text comes from the table, so listing commands does not import them. An entry
        # without help text is an alias (`container ls` and `container ps`) and is not listed.
        rows = [(name, help_) for name, (_, _, help_) in self.table.items() if help_]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


class Obj:
    """Per-invocation state handed to commands through click's context (no globals)."""

    def __init__(self, host: str | None) -> None:
        self.host = host
        self._client: APIClient | None = None

    @property
    def client(self) -> APIClient:
        # Imported here: building a client pulls in http.client, which --help must not pay for.
        from berth.client.api import APIClient

        if self._client is None:
            self._client = APIClient(self.host)
        return self._client


CONTEXT_SETTINGS = {"help_option_names": ["--help"], "max_content_width": 110}


@click.group(
    cls=LazyGroup,
    table=COMMANDS,
    context_settings=CONTEXT_SETTINGS,
    help="A self-sufficient runtime for containers",
)
@click.option("-H", "--host", envvar=None, help="Daemon socket to connect to (default $DOCKER_HOST)")
@click.version_option(
    __version__, "-v", "--version", message=VERSION_TEXT, help="Print version information and quit"
)
@click.pass_context
def cli(ctx: click.Context, host: str | None) -> None:
    ctx.obj = Obj(host)
