"""Management groups (`container`, `image`, `system`): the same commands under docker's nouns."""

from __future__ import annotations

import click

from berth.cli.app import CONTEXT_SETTINGS, LazyGroup

CONTAINER: dict[str, tuple[str, str, str]] = {
    "attach": (
        "container_attach",
        "attach",
        "Attach local standard input, output, and error streams to a running container",
    ),
    "commit": ("container_fs", "commit", "Create a new image from a container's changes"),
    "cp": ("container_fs", "cp", "Copy files/folders between a container and the local filesystem"),
    "create": ("container_run", "create", "Create a new container"),
    "diff": ("container_fs", "diff", "Inspect changes to files or directories on a container's filesystem"),
    "exec": ("container_exec", "exec_", "Execute a command in a running container"),
    "export": ("container_fs", "export", "Export a container's filesystem as a tar archive"),
    "inspect": ("inspect", "container_inspect", "Display detailed information on one or more containers"),
    "kill": ("container_life", "kill", "Kill one or more running containers"),
    "logs": ("container_logs", "logs", "Fetch the logs of a container"),
    "ls": ("container_info", "ps", "List containers"),
    "ps": ("container_info", "ps", ""),
    "list": ("container_info", "ps", ""),
    "port": ("container_info", "port", "List port mappings or a specific mapping for the container"),
    "prune": ("container_life", "container_prune", "Remove all stopped containers"),
    "rename": ("container_life", "rename", "Rename a container"),
    "restart": ("container_life", "restart", "Restart one or more containers"),
    "rm": ("container_life", "rm", "Remove one or more containers"),
    "remove": ("container_life", "rm", ""),
    "run": ("container_run", "run", "Create and run a new container from an image"),
    "start": ("container_life", "start", "Start one or more stopped containers"),
    "stop": ("container_life", "stop", "Stop one or more running containers"),
    "pause": ("container_res", "pause", "Pause all processes within one or more containers"),
    "stats": ("container_res", "stats", "Display a live stream of container(s) resource usage statistics"),
    "top": ("container_info", "top", "Display the running processes of a container"),
    "unpause": ("container_res", "unpause", "Unpause all processes within one or more containers"),
    "update": ("container_res", "update", "Update configuration of one or more containers"),
    "wait": (
        "container_life",
        "wait",
        "Block until one or more containers stop, then print their exit codes",
    ),
}

IMAGE: dict[str, tuple[str, str, str]] = {
    "build": ("image_build", "build", "Build an image from a Dockerfile"),
    "history": ("images", "history", "Show the history of an image"),
    "import": ("image_io", "import_", "Import the contents from a tarball to create a filesystem image"),
    "inspect": ("inspect", "image_inspect", "Display detailed information on one or more images"),
    "load": ("image_io", "load", "Load an image from a tar archive or STDIN"),
    "ls": ("images", "images", "List images"),
    "list": ("images", "images", ""),
    "prune": ("images", "image_prune", "Remove unused images"),
    "pull": ("registry", "pull", "Download an image from a registry"),
    "push": ("registry", "push", "Upload an image to a registry"),
    "rm": ("images", "rmi", "Remove one or more images"),
    "remove": ("images", "rmi", ""),
    "save": ("image_io", "save", "Save one or more images to a tar archive (streamed to STDOUT by default)"),
    "tag": ("images", "tag", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE"),
}

VOLUME: dict[str, tuple[str, str, str]] = {
    "create": ("volumes", "create", "Create a volume"),
    "inspect": ("volumes", "inspect", "Display detailed information on one or more volumes"),
    "ls": ("volumes", "ls", "List volumes"),
    "list": ("volumes", "ls", ""),
    "prune": ("volumes", "prune", "Remove unused local volumes"),
    "rm": ("volumes", "rm", "Remove one or more volumes"),
    "remove": ("volumes", "rm", ""),
}

NETWORK: dict[str, tuple[str, str, str]] = {
    "connect": ("networks", "connect", "Connect a container to a network"),
    "create": ("networks", "create", "Create a network"),
    "disconnect": ("networks", "disconnect", "Disconnect a container from a network"),
    "inspect": ("networks", "inspect", "Display detailed information on one or more networks"),
    "ls": ("networks", "ls", "List networks"),
    "list": ("networks", "ls", ""),
    "prune": ("networks", "prune", "Remove all unused networks"),
    "rm": ("networks", "rm", "Remove one or more networks"),
    "remove": ("networks", "rm", ""),
}

SYSTEM: dict[str, tuple[str, str, str]] = {
    "dial-stdio": ("system", "dial_stdio", ""),  # unlisted, as docker's: what ssh:// runs remotely
    "events": ("system", "events", "Get real time events from the server"),
    "info": ("system", "info", "Display system-wide information"),
}


@click.group("container", cls=LazyGroup, table=CONTAINER, context_settings=CONTEXT_SETTINGS)
def container() -> None:
    """Manage containers"""


@click.group("image", cls=LazyGroup, table=IMAGE, context_settings=CONTEXT_SETTINGS)
def image() -> None:
    """Manage images"""


@click.group("system", cls=LazyGroup, table=SYSTEM, context_settings=CONTEXT_SETTINGS)
def system() -> None:
    """Manage berth"""


@click.group("network", cls=LazyGroup, table=NETWORK, context_settings=CONTEXT_SETTINGS)
def network() -> None:
    """Manage networks"""


@click.group("volume", cls=LazyGroup, table=VOLUME, context_settings=CONTEXT_SETTINGS)
def volume() -> None:
    """Manage volumes"""


# The machine commands belong to berth.machine (which never imports the CLI); loaded on first use.
MACHINE: dict[str, tuple[str, str, str]] = {
    "ls": ("", "ls", "List machines"),
    "inspect": ("", "inspect", "Display detailed information on one or more machines"),
    "status": ("", "status", "Show the state of a machine"),
    "env": ("", "env", "Display the commands to point the docker CLI and berth at a machine"),
    "url": ("", "url", "Show the engine URL of a machine"),
    "ip": ("", "ip", "Show the IP address of a machine"),
    "ssh": ("", "ssh", "Run a command (or a shell) on a machine"),
    "scp": ("", "scp", "Copy files to or from a machine (NAME:PATH is a path on it)"),
    "context": ("", "context", "Create a docker CLI context named after a machine"),
    "start": ("", "start", "Start one or more machines"),
    "stop": ("", "stop", "Stop one or more machines (their containers keep running)"),
    "restart": ("", "restart", "Restart the engine of one or more machines"),
    "rm": ("", "rm", "Remove one or more machines and everything they hold"),
    "plan": ("", "plan_cmd", "Show what apply would do"),
    "apply": ("", "apply_cmd", "Create, change or remove machines to match the file"),
    "export": ("", "export", "Export machine state for another workstation"),
    "import": ("", "import_", "Import machine state exported elsewhere"),
}


class _MachineGroup(LazyGroup):
    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = self.table.get(cmd_name)
        if entry is None:
            return None
        from berth.machine import commands

        command: click.Command = getattr(commands, entry[1])
        return command


@click.group("machine", cls=_MachineGroup, table=MACHINE, context_settings=CONTEXT_SETTINGS)
@click.option("-f", "--file", "file", default=None, envvar="BERTH_MACHINE_FILE",
              help="The machines file (default ./machines.yml)")
@click.option("--state-dir", default=None, envvar="BERTH_MACHINE_STORAGE_PATH",
              help="Where machine state is kept (default ~/.berth/machines)")
@click.pass_context
def machine(ctx: click.Context, file: str | None, state_dir: str | None) -> None:
    """Manage machines (hosts running berthd) declared in machines.yml"""
    from berth.machine.commands import setup

    setup(ctx, file, state_dir)


def __getattr__(name: str) -> object:
    # `compose` is berth.compose's own click group (that package never imports the CLI); load it on use.
    if name == "compose":
        from berth.compose.cli import compose

        return compose
    raise AttributeError(name)
