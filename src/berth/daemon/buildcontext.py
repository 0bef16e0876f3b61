"""The build context once extracted: its Dockerfile, and `.dockerignore` applied to it."""

from __future__ import annotations

import os
import posixpath

from berth.build.dockerignore import PatternMatcher, candidates, keep_build_files, read_patterns
from berth.common.errors import NotFound


def apply_dockerignore(ctx: str, dockerfile: str) -> None:
    """Delete what `.dockerignore` (or `<Dockerfile>.dockerignore`) excludes from the extracted
    context, so an ignored file can neither be copied nor change a cache key."""
    patterns: list[str] | None = None
    ignore_file = ""
    for ignore_file in candidates(dockerfile):
        try:
            with open(os.path.join(ctx, ignore_file), "rb") as f:
                patterns = read_patterns(f.read())
            break
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            continue
    if not patterns:
        return
    # The client sends the Dockerfile and the ignore file even when they are excluded; dockerd
    # reads them, then drops them from the context, so `COPY . /` never copies them.
    own = PatternMatcher(patterns)
    for name in (ignore_file, dockerfile):
        rel = posixpath.normpath("/" + name).lstrip("/")
        if own.matches(rel):
            try:
                os.unlink(os.path.join(ctx, rel))
            except OSError:
                pass
    matcher = PatternMatcher(keep_build_files(patterns, dockerfile))
    for top, dirs, files in os.walk(ctx, topdown=True):
        rel_top = os.path.relpath(top, ctx)
        rel_top = "" if rel_top == "." else rel_top + "/"
        for name in list(files):
            if matcher.matches(rel_top + name):
                os.unlink(os.path.join(top, name))
        for name in list(dirs):
            rel = rel_top + name
            full = os.path.join(top, name)
            if os.path.islink(full):
                if matcher.matches(rel):
                    os.unlink(full)
                dirs.remove(name)
            elif matcher.matches(rel) and matcher.can_skip_dir(rel):
                _rmtree(full)
                dirs.remove(name)


def _rmtree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def find_dockerfile(ctx: str, name: str) -> bytes:
    rel = posixpath.normpath("/" + name).lstrip("/")
    try:
        with open(os.path.join(ctx, rel), "rb") as f:
            return f.read()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise NotFound(f"Cannot locate specified Dockerfile: {name}") from None

