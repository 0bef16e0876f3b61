"""`berth compose ...` and `berth-compose`: click commands that parse options and call `Compose`.

Heavy imports (the client, ruamel, jsonschema) happen inside the commands, so `--help` stays fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from berth.compose.executor import Compose
    from berth.compose.model import Project

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


class Opts:
    def __init__(self, host: str | None, files: tuple[str, ...], project_name: str | None,
                 project_directory: str | None, env_files: tuple[str, ...], profiles: tuple[str, ...]) -> None:
        self.host = host
        self.files = files
        self.project_name = project_name
        self.project_directory = project_directory
        self.env_files = env_files
        self.profiles = profiles

    def project(self) -> Project:
        from berth.compose.loader import LoadOptions, load_project

        return load_project(LoadOptions(files=self.files, project_name=self.project_name,
                                        project_directory=self.project_directory, env_files=self.env_files,
                                        profiles=self.profiles))

    def client(self) -> Any:
        from berth.client.api import APIClient

        return APIClient(self.host, timeout=600)

    def quick_name(self) -> str:
        """The project's name without loading (or validating) the whole model: for `ps`."""
        import os
        from pathlib import Path

        from berth.compose.naming import quick_project_name

        return quick_project_name(self.files, self.project_name, self.project_directory, self.env_files,
                                  os.environ, Path.cwd())

    def compose(self) -> Compose:
        from berth.compose.executor import Compose

        return Compose(self.client(), self.project(), emit=lambda line: click.echo(line, err=True))


def _run(fn: Callable[[], Any]) -> Any:
    from berth.client.errors import ClientError, DaemonUnreachable
    from berth.compose.errors import ComposeError

    try:
        return fn()
    except ComposeError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    except ClientError as exc:
        click.echo(f"Error response from daemon: {exc.message}", err=True)
        sys.exit(1)
    except DaemonUnreachable as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)


pass_opts = click.make_pass_decorator(Opts)


@click.group("compose", context_settings=CONTEXT, help="Define and run multi-container applications")
@click.option("-f", "--file", "files", multiple=True, help="Compose configuration files")
@click.option("-p", "--project-name", help="Project name")
@click.option("--project-directory", help="Alternate working directory (default: the first file's directory)")
@click.option("--env-file", "env_files", multiple=True, help="Alternate environment files")
@click.option("--profile", "profiles", multiple=True, help="Profiles to enable")
@click.option("-H", "--host", help="Daemon socket to connect to")
@click.pass_context
def compose(ctx: click.Context, files: tuple[str, ...], project_name: str | None, project_directory: str | None,
            env_files: tuple[str, ...], profiles: tuple[str, ...], host: str | None) -> None:
    parent = ctx.parent.obj if ctx.parent is not None else None
    host = host or getattr(parent, "host", None)
    ctx.obj = Opts(host, files, project_name, project_directory, env_files, profiles)


@compose.command(help="Parse, resolve and render the compose file in canonical format")
@click.option("-q", "--quiet", is_flag=True, help="Only validate the configuration")
@click.option("--services", is_flag=True, help="Print the service names, one per line")
@click.option("--volumes", is_flag=True, help="Print the volume names, one per line")
@click.option("--profiles", "list_profiles", is_flag=True, help="Print the profile names, one per line")
@pass_opts
def config(opts: Opts, quiet: bool, services: bool, volumes: bool, list_profiles: bool) -> None:
    project = _run(opts.project)
    if quiet:
        return
    if services:
        click.echo("\n".join(project.services))
    elif volumes:
        click.echo("\n".join(project.volumes))
    elif list_profiles:
        names = sorted({p for s in [*project.services.values(), *project.disabled.values()] for p in s.profiles})
        click.echo("\n".join(names))
    else:
        click.echo(project.to_yaml(), nl=False)


def _scale(values: tuple[str, ...]) -> dict[str, int]:
    out = {}
    for v in values:
        name, _, n = v.partition("=")
        if not n.isdigit():
            raise click.BadParameter(f"{v!r} (expected SERVICE=NUM)", param_hint="--scale")
        out[name] = int(n)
    return out


@compose.command(help="Create and start containers")
@click.option("-d", "--detach", is_flag=True, help="Run containers in the background")
@click.option("--build", is_flag=True, help="Build images before starting containers")
@click.option("--force-recreate", is_flag=True, help="Recreate containers even if nothing changed")
@click.option("--no-recreate", is_flag=True, help="Do not recreate existing containers")
@click.option("--no-deps", is_flag=True, help="Don't start linked services")
@click.option("--no-start", is_flag=True, help="Don't start the services after creating them")
@click.option("--scale", multiple=True, help="Scale SERVICE to NUM instances (SERVICE=NUM)")
@click.option("--remove-orphans", is_flag=True, help="Remove containers for services not in the compose file")
@click.option("--abort-on-container-exit", is_flag=True, help="Stop all containers if any container stops")
@click.option("--exit-code-from", help="Return the exit code of the selected service container")
@click.option("--wait", is_flag=True, help="Wait for services to be running|healthy. Implies detached mode")
@click.option("--wait-timeout", type=int, default=300,
              help="Maximum duration to wait for the project (and for depends_on conditions) to be running|healthy")
@click.argument("services", nargs=-1)
@pass_opts
def up(opts: Opts, detach: bool, build: bool, force_recreate: bool, no_recreate: bool, no_deps: bool,
       no_start: bool, scale: tuple[str, ...], remove_orphans: bool, abort_on_container_exit: bool,
       exit_code_from: str | None, wait: bool, wait_timeout: int, services: tuple[str, ...]) -> None:
    from berth.compose.executor import UpOptions

    if force_recreate and no_recreate:
        raise click.UsageError("--force-recreate and --no-recreate are incompatible")
    c = _run(opts.compose)
    _run(lambda: c.up(UpOptions(list(services), build, force_recreate, no_recreate, no_deps, _scale(scale),
                                remove_orphans, not no_start, dependency_timeout=wait_timeout)))
    if wait and not no_start:
        _run(lambda: c.wait_ready(services, wait_timeout))
    if detach or no_start or wait:
        return
    from berth.compose.logs import follow

    try:
        code = _run(lambda: follow(c, list(services), abort_on_exit=abort_on_container_exit or bool(exit_code_from),
                                   exit_code_from=exit_code_from))
    except KeyboardInterrupt:
        click.echo("Gracefully stopping... (press Ctrl+C again to force)", err=True)
        code = 130
        _run(lambda: c.stop())
    if abort_on_container_exit or exit_code_from:
        _run(lambda: c.stop())
    sys.exit(code or 0)


@compose.command(help="Stop and remove containers, networks")
@click.option("-v", "--volumes", is_flag=True, help="Remove named volumes declared in the volumes section")
@click.option("--rmi", type=click.Choice(["local", "all"]), help="Remove images used by services")
@click.option("--remove-orphans", is_flag=True, help="Remove containers for services not in the compose file")
@pass_opts
def down(opts: Opts, volumes: bool, rmi: str | None, remove_orphans: bool) -> None:
    c = _run(opts.compose)
    _run(lambda: c.down(volumes, rmi, remove_orphans))


@compose.command(help="List containers")
@click.option("-a", "--all", "all_", is_flag=True, help="Show all stopped containers")
@click.option("-q", "--quiet", is_flag=True, help="Only display IDs")
@click.option("--services", "only_services", is_flag=True, help="Display services")
@click.argument("services", nargs=-1)
@pass_opts
def ps(opts: Opts, all_: bool, quiet: bool, only_services: bool, services: tuple[str, ...]) -> None:
    from berth.compose.output import ps_table

    if services:  # names to check against the model
        c = _run(opts.compose)
        rows = _run(lambda: c.containers(services, all=all_))
    else:
        from berth.compose.listing import project_containers_at

        name = _run(opts.quick_name)
        rows = _run(lambda: project_containers_at(opts.host, name, all=all_))
    if quiet:
        click.echo("\n".join(r["Id"] for r in rows) if rows else "", nl=bool(rows))
    elif only_services:
        for name in dict.fromkeys(r["Labels"].get("com.docker.compose.service", "") for r in rows):
            click.echo(name)
    else:
        click.echo(ps_table(rows), nl=False)


@compose.command(help="View output from containers")
@click.option("-f", "--follow", is_flag=True, help="Follow log output")
@click.option("-t", "--timestamps", is_flag=True, help="Show timestamps")
@click.option("-n", "--tail", default="all", help="Number of lines to show from the end")
@click.option("--no-color", is_flag=True, help="Produce monochrome output")
@click.option("--no-log-prefix", is_flag=True, help="Don't print prefix in logs")
@click.argument("services", nargs=-1)
@pass_opts
def logs(opts: Opts, follow: bool, timestamps: bool, tail: str, no_color: bool, no_log_prefix: bool,
         services: tuple[str, ...]) -> None:
    from berth.compose.logs import show

    c = _run(opts.compose)
    _run(lambda: show(c, list(services), follow=follow, timestamps=timestamps, tail=tail,
                      color=not no_color and sys.stdout.isatty(), prefix=not no_log_prefix))


@compose.command(help="Build or rebuild services")
@click.option("--no-cache", is_flag=True, help="Do not use cache when building the image")
@click.argument("services", nargs=-1)
@pass_opts
def build(opts: Opts, no_cache: bool, services: tuple[str, ...]) -> None:
    c = _run(opts.compose)
    _run(lambda: c.build(services, nocache=no_cache))


def _simple(name: str, help_: str, method: str, timeout: bool = False) -> None:
    @click.argument("services", nargs=-1)
    @pass_opts
    def cmd(opts: Opts, services: tuple[str, ...], **kw: Any) -> None:
        c = _run(opts.compose)
        _run(lambda: getattr(c, method)(services, **kw))

    if timeout:
        cmd = click.option("-t", "--timeout", type=int, help="Shutdown timeout in seconds")(cmd)
    compose.command(name, help=help_)(cmd)


_simple("start", "Start services", "start")
_simple("stop", "Stop services", "stop", timeout=True)
_simple("restart", "Restart service containers", "restart", timeout=True)
_simple("pause", "Pause services", "pause")
_simple("unpause", "Unpause services", "unpause")


@compose.command(help="Force stop service containers")
@click.option("-s", "--signal", help="SIGNAL to send to the container")
@click.argument("services", nargs=-1)
@pass_opts
def kill(opts: Opts, signal: str | None, services: tuple[str, ...]) -> None:
    c = _run(opts.compose)
    _run(lambda: c.kill(services, signal))


@compose.command(help="Removes stopped service containers")
@click.option("-f", "--force", is_flag=True, help="Don't ask to confirm removal")
@click.option("-s", "--stop", is_flag=True, help="Stop the containers, if required, before removing")
@click.option("-v", "--volumes", is_flag=True, help="Remove any anonymous volumes attached to containers")
@click.argument("services", nargs=-1)
@pass_opts
def rm(opts: Opts, force: bool, stop: bool, volumes: bool, services: tuple[str, ...]) -> None:
    c = _run(opts.compose)
    _run(lambda: c.rm(services, stop=stop, volumes=volumes))


@compose.command(help="Run a one-off command on a service",
                 context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("-d", "--detach", is_flag=True, help="Run container in background")
@click.option("--rm", "remove", is_flag=True, help="Automatically remove the container when it exits")
@click.option("-e", "--env", multiple=True, help="Set environment variables")
@click.option("--no-deps", is_flag=True, help="Don't start linked services")
@click.argument("service")
@click.argument("command", nargs=-1)
@pass_opts
def run(opts: Opts, detach: bool, remove: bool, env: tuple[str, ...], no_deps: bool, service: str,
        command: tuple[str, ...]) -> None:
    from berth.client.stream import iter_frames

    c = _run(opts.compose)
    envs = dict(e.partition("=")[::2] for e in env)
    name, code = _run(lambda: c.run(service, list(command) or None, envs, remove=False, no_deps=no_deps,
                                    detach=detach))
    if detach:
        click.echo(name)
        return
    resp = c.client.containers.logs(name)
    for stream, data in iter_frames(resp):
        (sys.stderr if stream == 2 else sys.stdout).buffer.write(data)
    sys.stdout.flush()
    if remove:
        c.client.containers.remove(name, force=True)
    sys.exit(code or 0)


@compose.command("exec", help="Execute a command in a running container (non-interactive)",
                 context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("-e", "--env", multiple=True, help="Set environment variables")
@click.option("-u", "--user", help="Run the command as this user")
@click.option("-w", "--workdir", help="Path to workdir directory for this command")
@click.option("--index", type=int, default=1, help="Index of the container if service has multiple replicas")
@click.option("-T", "--no-TTY", "no_tty", is_flag=True, help="Disable pseudo-TTY allocation (always off)")
@click.option("-d", "--detach", is_flag=True, help="Detached mode")
@click.argument("service")
@click.argument("command", nargs=-1, required=True)
@pass_opts
def exec_(opts: Opts, env: tuple[str, ...], user: str | None, workdir: str | None, index: int, no_tty: bool,
          detach: bool, service: str, command: tuple[str, ...]) -> None:
    from berth.client.stream import SocketReader, iter_frames
    from berth.compose.convert import LABEL_NUMBER
    from berth.compose.errors import ComposeError

    c = _run(opts.compose)

    def target() -> dict[str, Any]:
        found = [x for x in c.containers([service], all=False) if x["Labels"].get(LABEL_NUMBER) == str(index)]
        if not found:
            raise ComposeError(f"service {service!r} is not running (index {index})")
        return found[0]

    ctr = _run(target)
    config = {"Cmd": list(command), "Env": list(env), "User": user or "", "WorkingDir": workdir or "",
              "AttachStdout": not detach, "AttachStderr": not detach, "Tty": False}
    eid = _run(lambda: c.client.containers.exec_create(ctr["Id"], config)["Id"])
    if detach:
        _run(lambda: c.client.execs.start_detached(eid))
        return
    sock, rest = _run(lambda: c.client.execs.start_attached(eid))
    for stream, data in iter_frames(SocketReader(sock, rest)):
        (sys.stderr if stream == 2 else sys.stdout).buffer.write(data)
        (sys.stderr if stream == 2 else sys.stdout).flush()
    sock.close()
    sys.exit(int(_run(lambda: c.client.execs.inspect(eid)).get("ExitCode") or 0))


@compose.command(help="Pull service images")
@click.option("--ignore-buildable", is_flag=True, help="Ignore images that can be built")
@click.argument("services", nargs=-1)
@pass_opts
def pull(opts: Opts, ignore_buildable: bool, services: tuple[str, ...]) -> None:
    from berth.compose.resources import pull_image

    c = _run(opts.compose)
    for name in services or tuple(c.project.services):
        svc = _run(partial(c.project.service, name))
        if svc.image and not (ignore_buildable and svc.build):
            _run(partial(pull_image, c.client, svc, svc.image, c.emit))


@compose.command(help="Receive real time events from containers")
@click.option("--json", "as_json", is_flag=True, help="Output events as a stream of json objects")
@click.option("--since", help="Show events created since this timestamp")
@click.option("--until", help="Stream events until this timestamp")
@click.argument("services", nargs=-1)
@pass_opts
def events(opts: Opts, as_json: bool, since: str | None, until: str | None, services: tuple[str, ...]) -> None:
    from berth.client.stream import iter_json
    from berth.compose.events import compose_event, format_event
    from berth.compose.labels import LABEL_PROJECT

    if services:
        project = _run(opts.project)
        for name in services:
            _run(partial(project.service, name))
    name = _run(opts.quick_name)
    client = opts.client()
    resp = _run(lambda: client.system.events(since=since, until=until, filters={
        "type": ["container"], "label": [f"{LABEL_PROJECT}={name}"]}))
    try:
        for msg in iter_json(resp):
            ev = compose_event(msg, set(services))
            if ev is not None:
                click.echo(format_event(ev, as_json))
    except KeyboardInterrupt:
        pass
    finally:
        resp.close()


@compose.command(help="Push service images")
@click.option("--ignore-push-failures", is_flag=True, help="Push what it can and ignores images with push failures")
@click.option("-q", "--quiet", is_flag=True, help="Push without printing progress information")
@click.argument("services", nargs=-1)
@pass_opts
def push(opts: Opts, ignore_push_failures: bool, quiet: bool, services: tuple[str, ...]) -> None:
    from berth.cli.dockerconfig import registry_auth_header
    from berth.compose.resources import push_images

    c = _run(opts.compose)
    failed = _run(lambda: push_images(c.client, c.project, list(services), c.emit if not quiet else _quiet,
                                      registry_auth_header, ignore_push_failures))
    for line in failed:
        click.echo(line, err=True)


def _quiet(line: str) -> None:
    pass


@compose.command(help="Watch build context for service and rebuild/refresh containers when files are updated")
@click.option("--no-up", is_flag=True, help="Do not build & start services before watching")
@click.option("--quiet", is_flag=True, help="Hide build output")
@click.argument("services", nargs=-1)
@pass_opts
def watch(opts: Opts, no_up: bool, quiet: bool, services: tuple[str, ...]) -> None:
    import signal
    import threading

    from berth.compose.executor import UpOptions
    from berth.compose.watch import Watcher, rules

    c = _run(opts.compose)
    found = _run(lambda: rules(c.project, list(services)))
    if not no_up:
        _run(lambda: c.up(UpOptions(services=list(services), build=True)))
    watcher = Watcher(c, found, emit=lambda line: click.echo(line, err=True))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    click.echo("Watch enabled", err=True)
    try:
        _run(lambda: watcher.run(stop))
    except KeyboardInterrupt:
        pass


@compose.command(help="Print the public port for a port binding")
@click.option("--protocol", default="tcp", help="tcp or udp")
@click.option("--index", type=int, default=1, help="Index of the container if service has multiple replicas")
@click.argument("service")
@click.argument("private_port", type=int)
@pass_opts
def port(opts: Opts, protocol: str, index: int, service: str, private_port: int) -> None:
    from berth.compose.convert import LABEL_NUMBER

    c = _run(opts.compose)
    for ctr in _run(lambda: c.containers([service], all=False)):
        if ctr["Labels"].get(LABEL_NUMBER) != str(index):
            continue
        for p in ctr.get("Ports") or []:
            if p.get("PrivatePort") == private_port and p.get("Type", "tcp") == protocol and p.get("PublicPort"):
                click.echo(f"{p.get('IP') or '0.0.0.0'}:{p['PublicPort']}")
                return
    click.echo(f"no port {private_port}/{protocol} published for {service} (index {index})", err=True)
    sys.exit(1)


@compose.command(help="Display the running processes")
@click.argument("services", nargs=-1)
@pass_opts
def top(opts: Opts, services: tuple[str, ...]) -> None:
    from berth.compose.output import table

    c = _run(opts.compose)
    for ctr in _run(lambda: c.containers(services, all=False)):
        procs = _run(partial(c.client.containers.top, ctr["Id"]))
        click.echo((ctr.get("Names") or ["/"])[0].lstrip("/"))
        click.echo(table(procs.get("Titles") or [], [[str(x) for x in row] for row in procs.get("Processes") or []]))


@compose.command(help="List images used by the created containers")
@click.argument("services", nargs=-1)
@pass_opts
def images(opts: Opts, services: tuple[str, ...]) -> None:
    from berth.compose.output import images_table

    c = _run(opts.compose)
    rows = _run(lambda: c.containers(services))
    click.echo(images_table(c.client, rows), nl=False)


@compose.command(help="List running compose projects")
@click.option("-a", "--all", "all_", is_flag=True, help="Show all stopped Compose projects")
@click.option("-q", "--quiet", is_flag=True, help="Only display project names")
@pass_opts
def ls(opts: Opts, all_: bool, quiet: bool) -> None:
    from berth.compose.output import projects_table

    client = opts.client()
    rows = _run(lambda: client.containers.list(all=all_, filters={"label": ["com.docker.compose.project"]}))
    click.echo(projects_table(rows, quiet), nl=False)


@compose.command(help="Show the Compose version information")
@click.option("--short", is_flag=True, help="Shows only Compose's version number")
def version(short: bool) -> None:
    from berth import __version__
    from berth.compose.convert import COMPOSE_VERSION

    click.echo(COMPOSE_VERSION if short else f"berth compose version {__version__} (compose labels v{COMPOSE_VERSION})")


def main(argv: list[str] | None = None) -> None:
    """`berth-compose ...`; also a docker CLI plugin (`~/.docker/cli-plugins/docker-compose` -> this),
    which docker runs as `docker-compose docker-cli-plugin-metadata` and `docker-compose compose ...`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["docker-cli-plugin-metadata"]:
        import json

        from berth import __version__

        click.echo(json.dumps({"SchemaVersion": "0.1.0", "Vendor": "berth", "Version": __version__,
                               "ShortDescription": "Docker Compose (berth)"}))
        return
    if args[:1] == ["compose"]:
        args = args[1:]
    compose.main(args, prog_name="berth-compose")

