"""`berth machine ...`: the commands parse options and call the machine package; the CLI loads
this module only when a machine command runs."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import click

from . import config
from .apply import Drivers, Outcome, apply
from .driver import MachineRecord
from .model import MachineConfigError, MachineError
from .plan import Plan, plan
from .state import NoSuchMachine, StateStore

CONTEXT_SETTINGS = {"help_option_names": ["--help"], "max_content_width": 110}


class MachineContext:
    """Per-invocation: which file and which state directory (no globals)."""

    def __init__(self, file: str | None, state_dir: str | None) -> None:
        self.file = file or config.DEFAULT_FILE
        self.store = StateStore(state_dir)
        self.drivers = Drivers(self.store)

    def record(self, name: str) -> MachineRecord:
        return self.store.load(name)

    def status(self, record: MachineRecord) -> str:
        return self.drivers.get(record.driver).status(record)


def _fail(message: str, code: int = 1) -> NoReturn:
    print(message, file=sys.stderr)
    raise click.exceptions.Exit(code)


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except (MachineConfigError, MachineError, NoSuchMachine) as e:
        _fail(f"error: {e}")


def _ctx() -> MachineContext:
    obj = click.get_current_context().find_object(MachineContext)
    if obj is None:  # a command invoked on its own
        obj = MachineContext(None, None)
    return obj


def setup(ctx: click.Context, file: str | None, state_dir: str | None) -> None:
    ctx.obj = MachineContext(file, state_dir)


# --- plan / apply ----------------------------------------------------------------------------------

def _plan(m: MachineContext, prune: bool) -> Plan:
    desired = config.load(m.file)
    records = m.store.all()
    running = {n: m.status(r) == "running" for n, r in records.items() if n in desired}
    return plan(desired, {n: r.spec for n, r in records.items()}, running, prune)


@click.command("plan", context_settings=CONTEXT_SETTINGS)
@click.option("--prune", is_flag=True, help="Also remove machines that are not in the file")
def plan_cmd(prune: bool) -> None:
    """Show what apply would do"""
    m = _ctx()
    with _errors():
        p = _plan(m, prune)
    for line in p.lines():
        click.echo(line)


@click.command("apply", context_settings=CONTEXT_SETTINGS)
@click.option("--prune", is_flag=True, help="Also remove machines that are not in the file")
@click.option("--parallel", default=8, show_default=True, help="Machines worked on at once")
def apply_cmd(prune: bool, parallel: int) -> None:
    """Create, change or remove machines to match the file"""
    m = _ctx()
    with _errors():
        p = _plan(m, prune)
    for line in p.lines():
        click.echo(line)
    if not p:
        return

    def done(o: Outcome) -> None:
        click.echo(o.line(), err=o.error is not None)

    outcomes = apply(p, m.store, m.drivers, workers=parallel, on_done=done)
    failed = [o for o in outcomes if o.error]
    click.echo(f"Apply: {len(outcomes) - len(failed)} done, {len(failed)} failed.")
    if failed:
        raise click.exceptions.Exit(1)


# --- reading -------------------------------------------------------------------------------------

@click.command("ls", context_settings=CONTEXT_SETTINGS)
@click.option("-q", "--quiet", is_flag=True, help="Only display machine names")
def ls(quiet: bool) -> None:
    """List machines"""
    m = _ctx()
    rows = [("NAME", "DRIVER", "STATE", "URL", "LABELS")]
    for name, rec in m.store.all().items():
        if quiet:
            click.echo(name)
            continue
        d = m.drivers.get(rec.driver)
        rows.append((name, rec.driver, d.status(rec), d.url(rec), ",".join(rec.spec.engine.label_list())))
    if quiet:
        return
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        click.echo("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "   " + r[-1])


def _inspect(m: MachineContext, rec: MachineRecord) -> dict[str, Any]:
    d = m.drivers.get(rec.driver)
    return {"Name": rec.name, "Driver": rec.driver, "State": d.status(rec), "URL": d.url(rec), "IP": d.ip(rec),
            "Spec": rec.spec.to_dict(), "Details": rec.details, "Created": rec.created}


@click.command("inspect", context_settings=CONTEXT_SETTINGS)
@click.argument("names", nargs=-1, required=True)
def inspect(names: tuple[str, ...]) -> None:
    """Display detailed information on one or more machines"""
    m = _ctx()
    with _errors():
        out = [_inspect(m, m.record(n)) for n in names]
    click.echo(json.dumps(out, indent=4))


@click.command("status", context_settings=CONTEXT_SETTINGS)
@click.argument("name")
def status(name: str) -> None:
    """Show the state of a machine"""
    m = _ctx()
    with _errors():
        click.echo(m.status(m.record(name)))


@click.command("url", context_settings=CONTEXT_SETTINGS)
@click.argument("name")
def url(name: str) -> None:
    """Show the engine URL of a machine"""
    m = _ctx()
    with _errors():
        rec = m.record(name)
        click.echo(m.drivers.get(rec.driver).url(rec))


@click.command("ip", context_settings=CONTEXT_SETTINGS)
@click.argument("name")
def ip(name: str) -> None:
    """Show the IP address of a machine"""
    m = _ctx()
    with _errors():
        rec = m.record(name)
        click.echo(m.drivers.get(rec.driver).ip(rec))


def env_lines(shell: str, values: dict[str, str | None], command: str) -> list[str]:
    """Shell lines that set (value) or unset (None) each variable, then docker-machine's hint."""
    out = []
    for key, value in values.items():
        if shell == "fish":
            out.append(f"set -gx {key} {json.dumps(value)};" if value is not None else f"set -e {key};")
        elif shell == "powershell":
            out.append(f'$Env:{key} = "{value}"' if value is not None else f"Remove-Item Env:\\{key}")
        else:
            out.append(f'export {key}="{value}"' if value is not None else f"unset {key}")
    comment = "#"
    out.append(f"{comment} Run this command to configure your shell:")
    out.append(f"{comment} eval $({command})" if shell != "powershell" else f"{comment} & {command} | Invoke-Expression")
    return out


@click.command("env", context_settings=CONTEXT_SETTINGS)
@click.argument("name", required=False)
@click.option("--shell", type=click.Choice(["sh", "bash", "zsh", "fish", "powershell"]), default=None,
              help="Force the environment for this shell (default: from $SHELL)")
@click.option("-u", "--unset", is_flag=True, help="Unset the variables instead of setting them")
def env(name: str | None, shell: str | None, unset: bool) -> None:
    """Display the commands to point the docker CLI and berth at a machine"""
    m = _ctx()
    shell = shell or (os.path.basename(os.environ.get("SHELL", "sh")) if os.environ.get("SHELL") else "sh")
    if shell not in ("fish", "powershell"):
        shell = "sh"
    values: dict[str, str | None]
    if unset:
        values = {"DOCKER_HOST": None, "BERTH_MACHINE_NAME": None}
        command = "berth machine env --unset"
    else:
        if not name:
            _fail("error: NAME is required unless --unset is given", 1)
        with _errors():
            rec = m.record(name)
        values = {"DOCKER_HOST": m.drivers.get(rec.driver).url(rec), "BERTH_MACHINE_NAME": name}
        command = f"berth machine env {name}"
    for line in env_lines(shell, values, command):
        click.echo(line)
    key = rec.spec.driver_options.get("identity_file") if not unset else None
    if key:  # ssh:// runs the user's own ssh, which knows nothing of machines.yml
        click.echo(f"# docker and berth log in with your ssh: it needs this machine's key (ssh-add {key})")


@click.command("ssh", context_settings={**CONTEXT_SETTINGS, "ignore_unknown_options": True})
@click.argument("name")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def ssh(name: str, command: tuple[str, ...]) -> None:
    """Run a command (or a shell) on a machine"""
    m = _ctx()
    with _errors():
        rec = m.record(name)
        argv = m.drivers.get(rec.driver).shell_argv(rec, list(command))
    sys.stdout.flush()
    os.execvp(argv[0], argv)


@click.command("scp", context_settings=CONTEXT_SETTINGS)
@click.option("-r", "--recursive", is_flag=True, help="Copy directories recursively")
@click.argument("paths", nargs=-1, required=True)
def scp(recursive: bool, paths: tuple[str, ...]) -> None:
    """Copy files to or from a machine (NAME:PATH is a path on it)"""
    m = _ctx()
    if len(paths) < 2:
        _fail("error: scp needs a source and a destination")
    known = set(m.store.names())
    on = [p.split(":", 1)[0] for p in paths if ":" in p and p.split(":", 1)[0] in known]
    if len(set(on)) != 1:
        _fail("error: exactly one machine may be named (NAME:PATH), on either side")
    with _errors():
        rec = m.record(on[0])
        driver = m.drivers.get(rec.driver)
    local = [p.removeprefix(f"{on[0]}:") for p in paths]
    copy_argv = getattr(driver, "copy_argv", None)
    if copy_argv is not None:  # `:PATH` means on the machine
        marked = [f":{p[len(on[0]) + 1:]}" if p.startswith(f"{on[0]}:") else p for p in paths]
        argv = copy_argv(rec, marked[:-1], marked[-1], recursive)
    else:  # a netns machine shares this host's filesystem
        argv = ["cp", *(["-r"] if recursive else []), "--", *local]
    sys.stdout.flush()
    os.execvp(argv[0], argv)


@click.command("context", context_settings=CONTEXT_SETTINGS)
@click.argument("name")
@click.option("--rm", "remove", is_flag=True, help="Remove the docker CLI context instead")
def context(name: str, remove: bool) -> None:
    """Create a docker CLI context named after a machine"""
    import hashlib
    import shutil

    m = _ctx()
    base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    meta_dir = os.path.join(base, "contexts", "meta", hashlib.sha256(name.encode()).hexdigest())
    if remove:
        shutil.rmtree(meta_dir, ignore_errors=True)
        click.echo(name)
        return
    with _errors():
        rec = m.record(name)
        url_ = m.drivers.get(rec.driver).url(rec)
    meta = {"Name": name, "Metadata": {"Description": f"berth machine {name} ({rec.driver})"},
            "Endpoints": {"docker": {"Host": url_, "SkipTLSVerify": False}}}
    os.makedirs(meta_dir, mode=0o755, exist_ok=True)
    path = os.path.join(meta_dir, "meta.json")
    with open(path + ".tmp", "w") as f:
        json.dump(meta, f)
    os.rename(path + ".tmp", path)
    click.echo(name)
    click.echo(f"# docker --context {name} ...  or  docker context use {name}", err=True)


# --- lifecycle -----------------------------------------------------------------------------------

def _each(names: tuple[str, ...], action: Callable[[MachineContext, MachineRecord], None]) -> None:
    m = _ctx()
    failed = 0
    for name in names:
        try:
            action(m, m.record(name))
            click.echo(name)
        except (MachineError, NoSuchMachine) as e:
            click.echo(f"error: {e}", err=True)
            failed += 1
    if failed:
        raise click.exceptions.Exit(1)


@click.command("start", context_settings=CONTEXT_SETTINGS)
@click.argument("names", nargs=-1, required=True)
def start(names: tuple[str, ...]) -> None:
    """Start one or more machines"""
    _each(names, lambda m, r: m.store.save(m.drivers.get(r.driver).start(r)))


@click.command("stop", context_settings=CONTEXT_SETTINGS)
@click.argument("names", nargs=-1, required=True)
def stop(names: tuple[str, ...]) -> None:
    """Stop one or more machines (their containers keep running)"""
    _each(names, lambda m, r: m.drivers.get(r.driver).stop(r))


@click.command("restart", context_settings=CONTEXT_SETTINGS)
@click.argument("names", nargs=-1, required=True)
def restart(names: tuple[str, ...]) -> None:
    """Restart the engine of one or more machines"""

    def one(m: MachineContext, r: MachineRecord) -> None:
        d = m.drivers.get(r.driver)
        d.stop(r)
        m.store.save(d.start(r))

    _each(names, one)


@click.command("rm", context_settings=CONTEXT_SETTINGS)
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Forget the machine even if removing it fails")
def rm(names: tuple[str, ...], force: bool) -> None:
    """Remove one or more machines and everything they hold"""

    def one(m: MachineContext, r: MachineRecord) -> None:
        try:
            m.drivers.get(r.driver).remove(r)
        except MachineError:
            if not force:
                raise
        m.store.forget(r.name)

    _each(names, one)


# --- sharing -------------------------------------------------------------------------------------

@click.command("export", context_settings=CONTEXT_SETTINGS)
@click.argument("names", nargs=-1)
@click.option("-o", "--output", default="-", help="Write to a file instead of STDOUT")
@click.option("--with-keys", is_flag=True, help="Include the machines' private keys")
def export(names: tuple[str, ...], output: str, with_keys: bool) -> None:
    """Export machine state for another workstation"""
    m = _ctx()
    with _errors():
        data = m.store.export(list(names) or None, with_keys)
    text = json.dumps(data, indent=2) + "\n"
    if output == "-":
        sys.stdout.write(text)
    else:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)


@click.command("import", context_settings=CONTEXT_SETTINGS)
@click.argument("file")
@click.option("--force", is_flag=True, help="Replace the records of machines that exist already")
def import_(file: str, force: bool) -> None:
    """Import machine state exported elsewhere"""
    m = _ctx()
    try:
        with (sys.stdin if file == "-" else open(file)) as f:
            data = json.load(f)
        for name in m.store.import_(data, overwrite=force):
            click.echo(name)
    except (OSError, ValueError) as e:
        _fail(f"error: {e}")
