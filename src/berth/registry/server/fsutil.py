"""Atomic file writes: the registry's on-disk state is only ever replaced by rename."""

from __future__ import annotations

import os


def write_atomic(path: str, data: bytes, sync: bool = True) -> None:
    """Write `data` to a temp file beside `path`, then rename: readers see old or new, never half."""
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".tmp-{os.urandom(8).hex()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None


def remove(path: str) -> bool:
    try:
        os.unlink(path)
        return True
    except (FileNotFoundError, NotADirectoryError):
        return False


def prune_empty_dirs(path: str, stop: str) -> None:
    """Remove `path` and its parents while they are empty, never `stop` itself."""
    stop = os.path.abspath(stop)
    path = os.path.abspath(path)
    while path.startswith(stop + os.sep):
        try:
            os.rmdir(path)
        except OSError:
            return
        path = os.path.dirname(path)
