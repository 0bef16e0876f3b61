"""`berth build`: send a directory as the build context to the legacy builder API."""

from __future__ import annotations

import io
import os
import sys
import tarfile
import tempfile
from typing import IO, Any

import click

from berth.cli.common import client
from berth.cli.errors import Failure


def _key_values(items: tuple[str, ...], what: str, env_fallback: bool = False) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise Failure(f"invalid {what}: {item!r}", 125)
        if not sep:
            if not env_fallback:
                value = ""
            elif key in os.environ:
                value = os.environ[key]
            else:
                continue  # docker: `--build-arg X` with X unset in the environment is ignored
        out[key] = value
    return out


def context_tar(root: str, dockerfile: str | None, out: IO[bytes]) -> str:
    """Write `root` as a tar (what .dockerignore excludes left out) to `out`; returns the
    Dockerfile's name inside the context (a Dockerfile from elsewhere is added under a private
    name, as the docker CLI does)."""
    from berth.build.dockerignore import PatternMatcher, candidates, keep_build_files, read_patterns

    extra: tuple[str, bytes] | None = None
    name = "Dockerfile"
    if dockerfile:
        path = os.path.abspath(dockerfile)
        rel = os.path.relpath(path, os.path.abspath(root))
        if rel.startswith(".."):
            with open(path, "rb") as f:
                extra = (f".dockerfile.{os.urandom(10).hex()}", f.read())
            name = extra[0]
        else:
            name = rel.replace(os.sep, "/")
    patterns: list[str] = []
    for candidate in candidates(name):
        try:
            with open(os.path.join(root, candidate), "rb") as f:
                patterns = read_patterns(f.read())
            break
        except OSError:
            continue
    matcher = PatternMatcher(keep_build_files(patterns, name)) if patterns else None
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        for top, dirs, files in os.walk(root):
            rel_top = os.path.relpath(top, root)
            rel_top = "" if rel_top == "." else rel_top.replace(os.sep, "/") + "/"
            dirs.sort()
            for d in list(dirs):
                rel = rel_top + d
                if matcher is not None and matcher.matches(rel) and matcher.can_skip_dir(rel):
                    dirs.remove(d)
                    continue
                if matcher is None or not matcher.matches(rel):
                    tf.add(os.path.join(top, d), rel, recursive=False, filter=_normalize)
            for f_name in sorted(files):
                rel = rel_top + f_name
                if matcher is not None and matcher.matches(rel):
                    continue
                tf.add(os.path.join(top, f_name), rel, recursive=False, filter=_normalize)
        if extra is not None:
            info = tarfile.TarInfo(extra[0])
            info.size = len(extra[1])
            info.mode = 0o600
            tf.addfile(info, io.BytesIO(extra[1]))
    return name


def _normalize(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


@click.command("build", short_help="Build an image from a Dockerfile")
@click.option("-t", "--tag", "tags", multiple=True, help="Name and optionally a tag in the 'name:tag' format")
@click.option("-f", "--file", "file", help="Name of the Dockerfile (Default is 'PATH/Dockerfile')")
@click.option("--build-arg", "build_args", multiple=True, help="Set build-time variables")
@click.option("--target", help="Set the target build stage to build")
@click.option("--no-cache", is_flag=True, help="Do not use cache when building the image")
@click.option("-q", "--quiet", is_flag=True, help="Suppress the build output and print image ID on success")
@click.option("--label", "labels", multiple=True, help="Set metadata for an image")
@click.option("--iidfile", type=click.Path(dir_okay=False), help="Write the image ID to the file")
@click.argument("path")
def build(tags: tuple[str, ...], file: str | None, build_args: tuple[str, ...], target: str | None,
          no_cache: bool, quiet: bool, labels: tuple[str, ...], iidfile: str | None, path: str) -> None:
    """Build an image from a Dockerfile"""
    from berth.client.stream import iter_json

    if path == "-" or "://" in path:
        raise Failure("berth build takes a local directory as its context", 125)
    if not os.path.isdir(path):
        raise Failure(f'unable to prepare context: path "{path}" not found', 1)
    with tempfile.TemporaryFile() as ctx:
        name = context_tar(path, file, ctx)
        size = ctx.tell()
        ctx.seek(0)
        if not quiet:
            sys.stdout.write(f"Sending build context to berth daemon  {_human(size)}\n")
        resp = client().images.build(ctx, tags=tags, dockerfile=name,
                                     build_args=_key_values(build_args, "build-arg", env_fallback=True),
                                     target=target, nocache=no_cache, quiet=quiet,
                                     labels=_key_values(labels, "label"))
        image_id = ""
        try:
            for msg in iter_json(resp):
                if not isinstance(msg, dict):
                    continue
                image_id = _handle(msg, quiet) or image_id
        finally:
            resp.close()
    if iidfile:
        with open(iidfile, "w") as f:
            f.write(image_id)
    if quiet:
        sys.stdout.write(image_id + "\n")


def _handle(msg: dict[str, Any], quiet: bool) -> str:
    if msg.get("error") or msg.get("errorDetail"):
        detail = msg.get("errorDetail") or {}
        raise Failure(str(msg.get("error") or detail.get("message", "unknown error")), 1)
    aux = msg.get("aux")
    if isinstance(aux, dict) and aux.get("ID"):
        return str(aux["ID"])
    if quiet and str(msg.get("stream", "")).startswith("sha256:"):
        return str(msg["stream"]).strip()  # a quiet build's only line (dockerd's and berthd's)
    if not quiet and "stream" in msg:
        sys.stdout.write(str(msg["stream"]))
        sys.stdout.flush()
    return ""


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.4g}{unit}"
        size /= 1000
    return f"{size:.4g}GB"
