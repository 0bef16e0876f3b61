"""A container's filesystem: diff, commit, export, cp."""

from __future__ import annotations

import io
import os
import shutil
import sys
import tarfile
from typing import IO, Any

import click

from berth.cli.common import client
from berth.cli.errors import Failure
from berth.cli.format.humanize import human_size
from berth.client.errors import ClientError

_KINDS = {0: "C", 1: "A", 2: "D"}
_GO_MODE_DIR = 1 << 31
_GO_MODE_SYMLINK = 1 << 27


@click.command("diff", short_help="Inspect changes to files or directories on a container's filesystem")
@click.argument("container")
def diff(container: str) -> None:
    """Inspect changes to files or directories on a container's filesystem"""
    for change in client().containers.changes(container):
        click.echo(f"{_KINDS.get(int(change.get('Kind', -1)), '?')} {change.get('Path')}")


@click.command("commit", short_help="Create a new image from a container's changes")
@click.option("-a", "--author", default="", help='Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")')
@click.option("-c", "--change", "changes", multiple=True, help="Apply Dockerfile instruction to the created image")
@click.option("-m", "--message", default="", help="Commit message")
@click.option("-p/--pause", "pause", default=True, help="Pause container during commit (default true)")
@click.option("--no-pause", "pause", flag_value=False, hidden=True)
@click.argument("container")
@click.argument("repository", required=False)
def commit(author: str, changes: tuple[str, ...], message: str, pause: bool, container: str,
           repository: str | None) -> None:
    """Create a new image from a container's changes"""
    repo, tag = _split_reference(repository or "")
    result = client().containers.commit(container, repo=repo or None, tag=tag or None, comment=message or None,
                                        author=author or None, pause=pause, changes=list(changes))
    click.echo(result.get("Id", ""))


def _split_reference(ref: str) -> tuple[str, str]:
    if not ref:
        return "", ""
    if "@" in ref:
        raise Failure(f'invalid reference format: "{ref}" (a digest cannot be used for commit)', 1)
    name, sep, tag = ref.rpartition(":")
    if sep and "/" not in tag:
        return name, tag
    return ref, ""


@click.command("export", short_help="Export a container's filesystem as a tar archive")
@click.option("-o", "--output", default="", help="Write to a file, instead of STDOUT")
@click.argument("container")
def export(output: str, container: str) -> None:
    """Export a container's filesystem as a tar archive"""
    if not output and sys.stdout.isatty():
        raise Failure("cowardly refusing to save to a terminal. Use the -o flag or redirect", 1)
    resp = client().containers.export(container)
    _copy_out(resp, output)


def _copy_out(resp: Any, output: str) -> None:
    if output:
        tmp = output + ".berth-tmp"
        with open(tmp, "wb") as f:
            shutil.copyfileobj(resp, f, 1 << 20)
        os.replace(tmp, output)
    else:
        shutil.copyfileobj(resp, sys.stdout.buffer, 1 << 20)
        sys.stdout.buffer.flush()


@click.command("cp", short_help="Copy files/folders between a container and the local filesystem")
@click.option("-a", "--archive", is_flag=True, help="Archive mode (copy all uid/gid information)")
@click.option("-L", "--follow-link", is_flag=True, help="Always follow symbol link in SRC_PATH")
@click.option("-q", "--quiet", is_flag=True, help="Suppress progress output during copy")
@click.argument("src")
@click.argument("dest")
def cp(archive: bool, follow_link: bool, quiet: bool, src: str, dest: str) -> None:
    """Copy files/folders between a container and the local filesystem

    Use '-' as the source to read a tar archive from stdin and extract it to a directory
    destination in a container. Use '-' as the destination to stream a tar archive of a
    container source to stdout."""
    src_ctr, src_path = _split_cp_arg(src)
    dest_ctr, dest_path = _split_cp_arg(dest)
    if src_ctr and dest_ctr:
        raise Failure("copying between containers is not supported", 1)
    if not src_ctr and not dest_ctr:
        raise Failure("must specify at least one container source", 1)
    if src_ctr:
        n = _copy_from(src_ctr, src_path, dest_path, follow_link)
        where = dest_path
    else:
        n = _copy_to(src_path, dest_ctr, dest_path, archive, follow_link)
        where = f"{dest_ctr}:{dest_path}"
    if not quiet and n >= 0 and dest_path != "-":
        print(f"Successfully copied {human_size(n)} to {where}", file=sys.stderr)


def _split_cp_arg(arg: str) -> tuple[str, str]:
    """`container:path` or a local path (one that starts with / or . is always local)."""
    if arg.startswith(("/", ".")) or ":" not in arg:
        return "", arg
    ctr, _, path = arg.partition(":")
    return ctr, path


def _copy_from(ctr: str, path: str, dest: str, follow: bool) -> int:
    api = client().containers
    if follow:
        st = api.stat_path(ctr, path)
        if st.get("mode", 0) & _GO_MODE_SYMLINK and st.get("linkTarget"):
            path = st["linkTarget"]
    resp, st = api.get_archive(ctr, path)
    if dest == "-":
        _copy_out(resp, "")
        return -1
    data = resp.read()
    is_dir = bool(st.get("mode", 0) & _GO_MODE_DIR)
    top = st.get("name", os.path.basename(path.rstrip("/")))
    if os.path.isdir(dest):
        target_dir, rename = dest, None
        if path.endswith("/.") and is_dir:
            rename = "."  # the contents of the directory, not the directory
    else:
        if dest.endswith("/"):
            raise Failure(f'Error response from daemon: destination directory "{dest}" does not exist', 1)
        parent = os.path.dirname(os.path.abspath(dest))
        if not os.path.isdir(parent):
            raise Failure(f"no such directory: {parent}", 1)
        target_dir, rename = parent, os.path.basename(dest)
    _extract(data, target_dir, top, rename)
    return len(data)


def _extract(data: bytes, target_dir: str, top: str, rename: str | None) -> None:
    """Extract the archive's top entry `top` (and what is below it) into `target_dir`, named
    `rename` if given. Entries that would leave `target_dir` are refused."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        members = []
        for m in tf.getmembers():
            name = m.name
            if rename is not None and top in (".", "/"):
                rest = name.removeprefix(top).strip("/")
                name = f"{rename}/{rest}" if rest else rename
            elif rename is not None and (name == top or name.startswith(top + "/")):
                name = rename + name[len(top):]
            name = os.path.normpath(name.lstrip("/")) if name.strip("/") else "."
            if name.startswith("..") or os.path.isabs(name):
                raise Failure(f"refusing to extract {m.name!r}: it leaves {target_dir}", 1)
            m.name = name
            if m.islnk():
                m.linkname = os.path.normpath(m.linkname.lstrip("/"))
            members.append(m)
        tf.extractall(target_dir, members=members, numeric_owner=True)


def _copy_to(src: str, ctr: str, dest: str, archive: bool, follow: bool) -> int:
    api = client().containers
    if src == "-":
        data: IO[bytes] | bytes = sys.stdin.buffer.read()
        api.put_archive(ctr, dest, data, no_overwrite_dir_non_dir=True, copy_uid_gid=archive)
        return -1
    if not os.path.lexists(src):
        raise Failure(f'lstat {os.path.abspath(src)}: no such file or directory', 1)
    src_is_dir = os.path.isdir(src) if follow else (os.path.isdir(src) and not os.path.islink(src))
    try:
        st = api.stat_path(ctr, dest)
        dest_exists = True
        dest_is_dir = bool(st.get("mode", 0) & _GO_MODE_DIR)
    except ClientError as exc:
        if exc.status != 404:
            raise
        dest_exists, dest_is_dir = False, False
    if dest_exists and dest_is_dir:
        put_dir = dest
        arcname = "." if src.endswith("/.") else os.path.basename(os.path.normpath(src))
    else:
        if dest_exists and src_is_dir:
            raise Failure("cannot copy a directory to a file", 1)
        if dest.endswith("/"):
            raise Failure(f'Error response from daemon: Could not find the file {dest} in container {ctr}', 1)
        put_dir = os.path.dirname(dest.rstrip("/")) or "/"
        arcname = os.path.basename(dest.rstrip("/"))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        tf.dereference = follow
        tf.add(src, arcname=arcname)
    data = buf.getvalue()
    api.put_archive(ctr, put_dir, data, no_overwrite_dir_non_dir=True, copy_uid_gid=archive)
    return len(data)
