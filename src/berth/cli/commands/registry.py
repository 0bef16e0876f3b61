"""pull, push, login, logout: registry commands (the daemon talks to the registry); and
`registry serve|gc`, which runs the registry server itself in this process."""

from __future__ import annotations

import io
import os
import sys

import click

from berth.cli.common import client
from berth.cli.errors import Failure


@click.command("pull", short_help="Download an image from a registry")
@click.option("-a", "--all-tags", is_flag=True, help="Download all tagged images in the repository")
@click.option("--platform", help="Set platform if server is multi-platform capable")
@click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output")
@click.argument("name")
def pull(all_tags: bool, platform: str | None, quiet: bool, name: str) -> None:
    """Download an image from a registry"""
    from berth.cli import dockerconfig, jsonprogress
    from berth.client import distribution
    from berth.common import reference

    try:
        ref = reference.parse(name)
    except reference.InvalidReference as e:
        raise Failure(str(e), 1) from None
    if all_tags:
        if ref.tag or ref.digest:
            raise Failure("tag can't be used with --all-tags/-a", 1)
        resp = distribution.pull(client(), ref.name, None, platform, dockerconfig.registry_auth_header(ref.domain))
        try:
            jsonprogress.show(resp, sys.stdout if not quiet else io.StringIO(), sys.stdout.isatty() and not quiet)
        finally:
            resp.close()
        print(ref.name)
        return
    if not ref.tag and not ref.digest:
        if not quiet:
            print("Using default tag: latest")
        ref = ref.with_default_tag()
    resp = distribution.pull(client(), ref.name, ref.digest or ref.tag, platform,
                             dockerconfig.registry_auth_header(ref.domain))
    try:
        jsonprogress.show(resp, sys.stdout if not quiet else io.StringIO(), sys.stdout.isatty() and not quiet)
    finally:
        resp.close()
    print(ref.name + (f":{ref.tag}" if ref.tag else f"@{ref.digest}"))


@click.command("push", short_help="Upload an image to a registry")
@click.option("-a", "--all-tags", is_flag=True, help="Push all tags of an image to the repository")
@click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output")
@click.argument("name")
def push(all_tags: bool, quiet: bool, name: str) -> None:
    """Upload an image to a registry"""
    from berth.cli import dockerconfig, jsonprogress
    from berth.client import distribution
    from berth.common import reference

    try:
        ref = reference.parse(name)
    except reference.InvalidReference as e:
        raise Failure(str(e), 1) from None
    if ref.digest:
        raise Failure("cannot push a digest reference", 1)
    if not ref.tag and not all_tags:
        if not quiet:
            print("Using default tag: latest")
        ref = ref.with_default_tag()
    resp = distribution.push(client(), ref.name, ref.tag, dockerconfig.registry_auth_header(ref.domain))
    try:
        jsonprogress.show(resp, sys.stdout if not quiet else io.StringIO(), sys.stdout.isatty() and not quiet)
    finally:
        resp.close()
    if quiet:
        print(str(ref))


@click.command("login", short_help="Authenticate to a registry")
@click.option("-u", "--username", help="Username")
@click.option("-p", "--password", help="Password or Personal Access Token (PAT)")
@click.option("--password-stdin", is_flag=True, help="Take the Password or Personal Access Token (PAT) from stdin")
@click.argument("server", required=False)
def login(username: str | None, password: str | None, password_stdin: bool, server: str | None) -> None:
    """Authenticate to a registry. Defaults to Docker Hub if no server is specified."""
    from berth.cli import dockerconfig
    from berth.client import distribution

    if password and password_stdin:
        raise Failure("--password and --password-stdin are mutually exclusive", 1)
    if password_stdin:
        if not username:
            raise Failure("Must provide --username with --password-stdin", 1)
        password = sys.stdin.read().rstrip("\r\n")
    elif password:
        click.echo("WARNING! Using --password via the CLI is insecure. Use --password-stdin.", err=True)
    key = dockerconfig.server_key(server or "")
    if not username:
        saved = dockerconfig.get(key)
        username = click.prompt("Username", default=saved[0] if saved else None)
    if not password:
        password = click.prompt("Password", hide_input=True)
    distribution.login(client(), username or "", password or "", key)
    dockerconfig.store(key, username or "", password or "")
    print("Login Succeeded")


@click.command("logout", short_help="Log out from a registry")
@click.argument("server", required=False)
def logout(server: str | None) -> None:
    """Log out from a registry. If no server is specified, the default is defined by the daemon."""
    from berth.cli import dockerconfig

    key = dockerconfig.server_key(server or "")
    if not dockerconfig.erase(key):
        print(f"Not logged in to {key}")
        return
    print(f"Removing login credentials for {key}")


@click.command("registry", add_help_option=False,
               context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def registry(args: tuple[str, ...]) -> None:
    """Run an OCI distribution registry: `serve --addr HOST:PORT --root DIR [...]`, or `gc --root DIR`."""
    if not args or args[0] not in ("serve", "gc"):
        print("Usage: berth registry serve --addr HOST:PORT --root DIR [--htpasswd FILE] [--policy FILE]\n"
              "                            [--token] [--tls-cert FILE --tls-key FILE] [--proxy URL] [--delete]\n"
              "       berth registry gc --root DIR [--online [--grace SECONDS]] [--dry-run]\n\n"
              "`berth registry serve --help` lists every option.")
        raise SystemExit(0 if args[:1] in (("--help",), ("-h",)) else 1)
    # The server is its own program (it uses the engine's HTTP core, which the CLI must not
    # import): become it, so signals and the exit code are its own.
    os.execv(sys.executable, [sys.executable, "-m", "berth.registry.server", *args])
