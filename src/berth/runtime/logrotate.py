"""Log options (`--log-opt`) and the rotation of container logs (max-size, max-file).

Rotation is berthd's, not conmon's (conmon's --log-size-max truncates): when `ctr.log` reaches
max-size, berthd renames it to `ctr.log.1` (older files move up, the oldest beyond max-file
goes) and asks conmon, through its control fifo, to reopen the log, which makes a new `ctr.log`.
conmon writes to the renamed file until it reopens, so no line is lost; readers (runtime/logs.py)
take the rotated files in order and follow a file across renames. berthd polls the size, so a
file can outgrow max-size by what came between two polls; such a file is cut into max-size files
once nothing writes to it (`trim`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from dataclasses import dataclass
from urllib.parse import quote_plus

from berth.common.errors import InvalidParameter

from .logs import rotated_paths

log = logging.getLogger("berth.logs")

# The options each driver takes (dockerd's ValidateLogOpt); `local` rotates by default.
_DRIVER_OPTS = {
    "json-file": {"max-file", "max-size", "compress", "labels", "labels-regex", "env", "env-regex", "tag"},
    "local": {"max-file", "max-size", "compress"},
    "none": set(),
}
_LOCAL_DEFAULTS = {"max-size": "20m", "max-file": "5"}
_DECIMAL = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15}
_HUMAN_SIZE = re.compile(r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$")


def check_log_opts(driver: str, opts: dict[str, str]) -> None:
    """Unknown options, refused at create as dockerd does (values are checked at start)."""
    allowed = _DRIVER_OPTS.get(driver)
    if allowed is None:
        return
    for key in opts:
        if key not in allowed:
            where = "json-file log driver" if driver == "json-file" else f"log driver {driver}"
            raise InvalidParameter(f"unknown log opt '{key}' for {where}")


@dataclass(frozen=True)
class LogSettings:
    max_size: int | None   # bytes; None: the log is never rotated
    max_files: int         # the current file included


def log_settings(driver: str, opts: dict[str, str]) -> LogSettings:
    """What rotation a container's LogConfig asks for; dockerd's errors at start for bad values."""
    if driver == "local":
        opts = {**_LOCAL_DEFAULTS, **opts}
    elif driver != "json-file":
        return LogSettings(None, 1)
    try:
        max_size = None
        if "max-size" in opts:
            max_size = from_human_size(opts["max-size"])
            if max_size <= 0:
                raise ValueError("max-size must be a positive number")
        max_files = 1
        if "max-file" in opts:
            try:
                max_files = int(opts["max-file"])
            except ValueError:
                raise ValueError(f'strconv.Atoi: parsing "{opts["max-file"]}": invalid syntax') from None
            if max_files < 1:
                raise ValueError("max-file cannot be less than 1")
        for key in ("labels-regex", "env-regex"):
            try:
                re.compile(opts.get(key) or "")
            except re.error as e:
                raise ValueError(f"error parsing regexp: {e}") from None
        compress = opts.get("compress", "false").lower() in ("1", "t", "true")
        if driver == "json-file" and compress and (max_files == 1 or max_size is None):
            raise ValueError("compress cannot be true when max-file is less than 2 or max-size is not set")
    except ValueError as e:
        raise InvalidParameter(f"failed to initialize logging driver: {e}") from None
    return LogSettings(max_size, max_files)


def from_human_size(text: str) -> int:
    """docker's units.FromHumanSize: decimal multiples (`10k` is 10000 bytes)."""
    m = _HUMAN_SIZE.match(text.strip())
    if not m:
        raise ValueError(f"invalid size: '{text}'")
    return int(float(m.group(1)) * _DECIMAL[(m.group(2) or "").lower()])


def extra_attributes(opts: dict[str, str], labels: dict[str, str], env: list[str]) -> dict[str, str]:
    """The attributes `logs --details` shows: the labels and variables the log options name
    (dockerd's Info.ExtraAttributes, including its quirk that labels-regex needs labels set)."""
    extra: dict[str, str] = {}
    names = opts.get("labels", "")
    if names:
        extra.update({k: labels[k] for k in names.split(",") if k in labels})
        pattern = _regex(opts.get("labels-regex"))
        if pattern:
            extra.update({k: v for k, v in labels.items() if pattern.search(k)})
    env_map = dict(e.split("=", 1) for e in env if "=" in e)
    if opts.get("env"):
        extra.update({k: env_map[k] for k in opts["env"].split(",") if k in env_map})
    pattern = _regex(opts.get("env-regex"))
    if pattern:
        extra.update({k: v for k, v in env_map.items() if pattern.search(k)})
    return extra


def _regex(text: str | None) -> re.Pattern[str] | None:
    """A log option's pattern; None when unset or invalid (a container with one never starts)."""
    try:
        return re.compile(text) if text else None
    except re.error:
        return None


def details_prefix(attrs: dict[str, str]) -> bytes:
    """`k=v,k2=v2 ` (sorted, query-escaped) before each line; a lone space when there are none."""
    return (",".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in sorted(attrs.items())) + " ").encode()


# conmon's terminal control fifo: message type 2 reopens the log (conmon.h REOPEN_LOGS_EVENT)
_REOPEN = b"2 0 0\n"


def rotate(path: str, max_files: int, ctl_path: str) -> bool:
    """Move the current log to `.1` (older ones up by one, the oldest beyond `max_files` gone)
    and have conmon reopen: it writes to the renamed file until then, so no line is lost, and
    the file it reopens is new. False, changing nothing, while the previous reopen is pending."""
    if not os.path.exists(path):
        return False
    keep = max_files - 1
    for old in rotated_paths(path):  # the oldest first, so no rename lands on a file
        n = int(old.rsplit(".", 1)[1])
        if n >= keep:
            os.unlink(old)
        else:
            os.rename(old, f"{path}.{n + 1}")
    os.rename(path, f"{path}.1")
    reopen(ctl_path)
    # max-file=1 truncates the log, as json-file does: `.1` goes once conmon has reopened (it
    # writes there until then), or comes back as the current log if the container exits first.
    return True


def reopen(ctl_path: str) -> None:
    try:
        fd = os.open(ctl_path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:  # ENXIO / ENOENT: conmon is gone, and the next one opens a new file
        return
    try:
        os.write(fd, _REOPEN)
    except OSError:
        pass
    finally:
        os.close(fd)


def trim(path: str, max_size: int, max_files: int, at: int = 1) -> None:
    """Cut an oversized file into files of at most max-size, as json-file would have written
    them: `path.1` after a burst between two polls (at=1), or `path` itself once the container
    has exited (at=0). The newest pieces take its place and the ones after it, up to max-file
    files in all; older rotated files move up. Only for a file nothing writes to any more."""
    def name(i: int) -> str:
        return f"{path}.{i}" if i else path

    slots = max_files - at
    try:
        size = os.path.getsize(name(at))
    except FileNotFoundError:
        return
    if size <= max_size or slots <= 0:
        return
    with open(name(at), "rb") as f:
        start = max(0, size - max_size * slots - 1)
        f.seek(start)
        data = f.read()
    if start:
        data = data[data.index(b"\n") + 1:] if b"\n" in data else b""
    chunks: list[bytes] = []  # newest first, each whole records
    end = len(data)
    while end > 0 and len(chunks) < slots:
        lo = 0 if end <= max_size else data.find(b"\n", end - max_size - 1, end) + 1
        if lo == 0 and end > max_size or lo >= end:  # one record longer than max-size
            lo = data.rfind(b"\n", 0, end - 1) + 1
        chunks.append(data[lo:end])
        end = lo
    if not chunks:
        return
    for old in rotated_paths(path):  # the oldest first: no rename lands on a file
        n = int(old.rsplit(".", 1)[1])
        if n <= at:
            continue
        if n + len(chunks) - 1 >= max_files:
            os.unlink(old)
        else:
            os.rename(old, name(n + len(chunks) - 1))
    for k in reversed(range(len(chunks))):  # the file cut up is replaced last
        tmp = f"{path}.tmp-{k}"
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600), "wb") as out:
            out.write(chunks[k])
        os.rename(tmp, name(at + k))


def _unlink_if_there(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def finish_rotation(path: str, settings: LogSettings) -> None:
    """At the container's exit (nothing writes any more): cut what outgrew max-size."""
    assert settings.max_size is not None
    if not os.path.exists(path):
        # The exit came between a rotation's rename and conmon's reopen: the newest lines are
        # in `.1`. Shift the files back, so the current log holds them as it always does.
        rotated = rotated_paths(path)
        for old in reversed(rotated):  # `.1` first: each rename frees the name the next needs
            n = int(old.rsplit(".", 1)[1])
            os.rename(old, path if n == 1 else f"{path}.{n - 1}")
    elif settings.max_files == 1:
        _unlink_if_there(f"{path}.1")  # truncated at the last rotation; conmon had reopened
    trim(path, settings.max_size, settings.max_files, at=1)
    trim(path, settings.max_size, settings.max_files, at=0)


async def keep_rotated(path: str, ctl_path: str, settings: LogSettings) -> None:
    """Rotate `path` whenever it reaches max-size, until cancelled (the container stopped).
    Polls its size, sooner the faster it grows (every 50 to 250 ms: a stat each)."""
    assert settings.max_size is not None
    limit = settings.max_size
    if not os.path.exists(path):
        reopen(ctl_path)  # a rotation cut short (berthd died between rename and reopen)
    last = 0
    interval = 0.05
    untrimmed = True  # `.1` may be oversized from before (berthd was down)
    while True:
        try:
            size, reopened = os.stat(path).st_size, True
        except FileNotFoundError:
            size, reopened = 0, False  # conmon has not reopened yet: `.1` is still written to
        rate = (size - last if size >= last else size) / interval  # bytes a second, lately
        try:
            if reopened and untrimmed:
                trim(path, limit, settings.max_files)
                if settings.max_files == 1:
                    _unlink_if_there(f"{path}.1")
                untrimmed = False
            if size >= limit and rotate(path, settings.max_files, ctl_path):
                size = 0
                untrimmed = True
        except OSError as e:  # e.g. the container's directory going away with it
            log.warning("rotation of %s failed: %s", path, e)
        last = size
        interval = 0.25 if rate <= 0 else min(max((limit - size) / rate / 2, 0.05), 0.25)
        await asyncio.sleep(interval)
