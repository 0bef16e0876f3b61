"""`RUN --mount=type=cache,target=/root/.cache,...` parsing, with BuildKit's keys and defaults.

Mount options may hold `${VAR}`s, which expand when the step runs; `parse_mount` with no expander
validates what is already literal and leaves the rest for `parse_mount(spec, expander)`.
"""

from __future__ import annotations

import csv
import posixpath
from collections.abc import Callable
from dataclasses import dataclass

from berth.build.flags import ram_in_bytes, with_suggestion

MOUNT_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
SHARING_MODES = ("shared", "private", "locked")
_KEYS = ("type", "from", "source", "target", "readonly", "id", "sharing", "required", "size", "mode",
         "uid", "gid", "src", "dst", "destination", "ro", "rw", "readwrite", "env")
_TRUE = ("1", "t", "T", "true", "TRUE", "True")
_FALSE = ("0", "f", "F", "false", "FALSE", "False")


class MountError(ValueError):
    pass


@dataclass(frozen=True)
class Mount:
    type: str = "bind"
    from_: str = ""
    source: str = ""
    target: str = ""
    readonly: bool = True
    id: str = ""
    sharing: str = ""
    required: bool = False
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    size: int = 0
    env: str | None = None


def _go_bool(key: str, value: str) -> bool:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise MountError(f"invalid value for {key}: {value}")


def _uint(key: str, value: str, base: int) -> int:
    try:
        number = int(value, base)
    except ValueError:
        number = -1
    if number < 0 or number >= 1 << 32:
        raise MountError(f"invalid value {value} for {key}")
    return number


def parse_mount(spec: str, expander: Callable[[str], str] | None = None) -> Mount:
    """One --mount value. Without an expander, values holding `$` are left unchecked."""
    fields = next(csv.reader([spec]), [])
    values: dict[str, object] = {}
    mount_type = "bind"
    ro_auto = True
    deferred = False
    for item in fields:
        key, has_value, value = item.partition("=")
        key = key.lower()
        if not has_value:
            if key in ("readonly", "ro", "readwrite", "rw"):
                values["readonly"] = key in ("readonly", "ro")
                ro_auto = False
            elif key == "required" and mount_type in ("secret", "ssh"):
                values["required"] = True
            elif key == "required":
                raise MountError(f"unexpected key '{key}' for mount type '{mount_type}'")
            else:
                raise MountError(f"invalid field '{item}' must be a key=value pair")
            continue
        if expander is not None:
            value = expander(value)
        elif "$" in value:
            deferred = True
            continue
        if key == "type":
            if value.lower() not in MOUNT_TYPES:
                raise MountError(with_suggestion(f"unsupported mount type \"{value}\"", value, MOUNT_TYPES))
            mount_type = value.lower()
        elif key in ("readonly", "ro", "readwrite", "rw"):
            flag = _go_bool(key, value)
            values["readonly"] = flag if key in ("readonly", "ro") else not flag
            ro_auto = False
        elif key in ("required", "size") and mount_type not in (("secret", "ssh") if key == "required"
                                                                 else ("tmpfs",)):
            raise MountError(f"unexpected key '{key}' for mount type '{mount_type}'")
        elif key == "required":
            values["required"] = _go_bool(key, value)
        elif key == "size":
            try:
                values["size"] = ram_in_bytes(value)
            except ValueError as exc:
                raise MountError(str(exc)) from None
        elif key == "sharing":
            if value.lower() not in SHARING_MODES:
                raise MountError(f"unsupported sharing value \"{value}\"")
            values["sharing"] = value.lower()
        elif key in ("mode", "uid", "gid"):
            values[key] = _uint(key, value, 8 if key == "mode" else 10)
        elif key in _ALIASES:
            values[_ALIASES[key]] = value
        else:
            raise MountError(with_suggestion(f"unexpected key '{key}' in '{item}'", key, _KEYS))
    return _finish(mount_type, values, ro_auto, deferred)


_ALIASES = {"from": "from_", "source": "source", "src": "source", "target": "target", "dst": "target",
            "destination": "target", "id": "id", "env": "env"}


def _finish(mount_type: str, values: dict[str, object], ro_auto: bool, deferred: bool) -> Mount:
    if ro_auto:
        # Bind, secret and ssh mounts are read-only unless asked; caches and tmpfs are writable.
        values["readonly"] = mount_type not in ("cache", "tmpfs")
    if values.get("sharing") and mount_type != "cache":
        raise MountError(f"invalid cache sharing set for {mount_type} mount")
    if mount_type == "tmpfs" and any(k in values for k in ("mode", "uid", "gid")):
        raise MountError("mode/uid/gid not allowed for tmpfs mounts")
    if mount_type in ("secret", "ssh"):
        if values.get("from_"):
            raise MountError(f"{mount_type} mount should not have a from")
        if values.get("source"):
            if values.get("id"):
                raise MountError(f"{mount_type} mount should not define both id and source")
            values["id"] = values.pop("source")
        if mount_type == "ssh" and not values.get("id"):
            values["id"] = "default"
        if mount_type == "secret" and not deferred:
            # A secret needs a name: its id, else the file name of its target (and vice versa).
            target, secret_id = str(values.get("target") or ""), str(values.get("id") or "")
            if not secret_id and not target:
                raise MountError("one of source, target required")
            values["id"] = secret_id or posixpath.basename(target)
            values["target"] = target or "/run/secrets/" + posixpath.basename(secret_id)
    if mount_type == "cache" and not values.get("sharing"):
        values["sharing"] = "shared"
    if not deferred and not values.get("target") and mount_type not in ("secret", "ssh"):
        raise MountError(f"mount type {mount_type} requires a target")
    return Mount(type=mount_type, **values)  # type: ignore[arg-type]
