"""Stage 5: canonical forms, so files merge field by field and the model sees one shape per field.

`canonical_service` runs on each file's services before merging (list forms become mappings or
long syntax, relative paths become absolute against the file's base directory);
`finalize_service` runs once on the merged result (env files read, commands split, the default
network added).
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from berth.compose.errors import ComposeError

MAPPING_FIELDS = ("environment", "labels", "annotations", "sysctls")
LIST_FIELDS = ("dns", "dns_search", "dns_opt", "tmpfs", "expose", "cap_add", "cap_drop", "env_file",
               "security_opt", "profiles", "devices", "group_add", "external_links", "links", "volumes_from")


def kv_list(value: Any, sep: str = "=") -> dict[str, Any]:
    """`["A=1", "B"]` or `{A: 1}` as a mapping; a bare key maps to None (taken from the environment)."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): (None if v is None else _scalar(v)) for k, v in value.items()}
    out: dict[str, Any] = {}
    for item in value:
        key, has, val = str(item).partition(sep)
        out[key] = val if has else None
    return out


def _scalar(v: Any) -> Any:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return v


def extra_hosts(value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        return {str(k): ",".join(v) if isinstance(v, list) else str(v) for k, v in value.items()}
    out: dict[str, str] = {}
    for item in value or ():
        text = str(item)
        m = re.match(r"^([^=:]+)[=:](.*)$", text)
        if not m:
            raise ComposeError(f"invalid extra_hosts entry {text!r} (expected HOST:IP or HOST=IP)")
        out[m.group(1)] = m.group(2).strip("[]")
    return out


def parse_port(spec: Any) -> list[dict[str, Any]]:
    """Short port syntax `[ip:][published[-range]:]target[-range][/protocol]` as long syntax entries."""
    if isinstance(spec, dict):
        long: dict[str, Any] = dict(spec)
        try:
            long["target"] = int(long["target"])
        except ValueError as exc:
            raise ComposeError(f"invalid port {spec!r}: target must be a port number") from exc
        long.setdefault("protocol", "tcp")
        long.setdefault("mode", "ingress")
        if "published" in long and long["published"] is not None:
            long["published"] = str(long["published"])
        return [long]
    text = str(spec)
    text, _, proto = text.partition("/")
    proto = proto or "tcp"
    host_ip = ""
    if text.startswith("["):
        end = text.index("]")
        host_ip, text = text[1:end], text[end + 2:]
    parts = text.rsplit(":", 2)
    if len(parts) == 3:
        host_ip, published, target = parts
    elif len(parts) == 2:
        published, target = parts
    else:
        published, target = "", parts[0]
    try:
        t_lo, t_hi = _range(target)
        p_lo, p_hi = _range(published) if published else (0, 0)
    except ValueError as exc:
        raise ComposeError(f"invalid port {spec!r}: {exc}") from exc
    entries = []
    for i in range(t_hi - t_lo + 1):
        entry = {"mode": "ingress", "target": t_lo + i, "protocol": proto}
        if published:
            entry["published"] = str(p_lo + i if p_hi != p_lo else p_lo)
        if host_ip:
            entry["host_ip"] = host_ip
        entries.append(entry)
    return entries


def _range(text: str) -> tuple[int, int]:
    lo, _, hi = text.partition("-")
    a = int(lo)
    b = int(hi) if hi else a
    if not (0 < a <= b < 65536):
        raise ValueError(f"port range {text!r} is out of bounds")
    return a, b


def is_bind_source(source: str) -> bool:
    return source.startswith(("/", ".", "~")) or "/" in source or "\\" in source


def parse_volume(spec: Any, base_dir: Path) -> dict[str, Any]:
    """Short volume syntax `[source:]target[:mode]` (or long syntax) as a long syntax entry."""
    if isinstance(spec, dict):
        entry: dict[str, Any] = dict(spec)
        if entry.get("type") == "bind" and entry.get("source"):
            entry["source"] = resolve_path(str(entry["source"]), base_dir)
        return entry
    parts = str(spec).split(":")
    if len(parts) == 1:
        return {"type": "volume", "target": parts[0]}
    source, target = parts[0], parts[1]
    mode = parts[2] if len(parts) > 2 else ""
    flags = set(mode.split(",")) if mode else set()
    if is_bind_source(source):
        entry = {"type": "bind", "source": resolve_path(source, base_dir), "target": target,
                 "bind": {"create_host_path": True}}
        if flags & {"z", "Z"}:
            entry["bind"]["selinux"] = "z" if "z" in flags else "Z"
    else:
        entry = {"type": "volume", "source": source, "target": target, "volume": {}}
        if "nocopy" in flags:
            entry["volume"]["nocopy"] = True
    if "ro" in flags:
        entry["read_only"] = True
    return entry


def resolve_path(path: str, base_dir: Path) -> str:
    if path.startswith("~"):
        return os.path.expanduser(path)
    if os.path.isabs(path):
        return path
    return os.path.normpath(str(base_dir / path))


def _is_remote(context: str) -> bool:
    return bool(re.match(r"^(https?://|git@|git://|github\.com/)", context))


def canonical_service(svc: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """Canonical forms for one file's service; `!override` values are canonicalised inside their tag,
    `!reset` markers are left for the merge."""
    from berth.compose.yamlfile import Override, Reset

    plain = {k: v for k, v in svc.items() if not isinstance(v, (Override, Reset))}
    out = _canonical(plain, base_dir)
    for key, value in svc.items():
        if isinstance(value, Reset):
            out[key] = value
        elif isinstance(value, Override):
            out[key] = Override(_canonical({key: value.value}, base_dir)[key])
    return out


def _canonical(svc: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    out = dict(svc)
    for key in MAPPING_FIELDS:
        if key in out:
            out[key] = kv_list(out[key])
    for key in LIST_FIELDS:
        if key in out and isinstance(out[key], str):
            out[key] = [out[key]]
    if "env_file" in out:
        out["env_file"] = [
            {"path": resolve_path(e, base_dir), "required": True} if isinstance(e, str)
            else {**e, "path": resolve_path(str(e["path"]), base_dir)}
            for e in out["env_file"]
        ]
    if "extra_hosts" in out:
        out["extra_hosts"] = extra_hosts(out["extra_hosts"])
    if "build" in out:
        build = {"context": out["build"]} if isinstance(out["build"], str) else dict(out["build"])
        if "context" in build:
            context = str(build["context"])
            build["context"] = context if _is_remote(context) else resolve_path(context, base_dir)
        for key in ("args", "labels"):
            if key in build:
                build[key] = kv_list(build[key])
        out["build"] = build
    if "depends_on" in out:
        dep = out["depends_on"]
        if isinstance(dep, list):
            out["depends_on"] = {d: {"condition": "service_started", "required": True} for d in dep}
        else:
            out["depends_on"] = {k: {"condition": "service_started", "required": True, **(v or {})}
                                 for k, v in dep.items()}
    if "networks" in out and isinstance(out["networks"], list):
        out["networks"] = {n: None for n in out["networks"]}
    if "ports" in out:
        out["ports"] = [e for p in out["ports"] for e in parse_port(p)]
    if "volumes" in out:
        out["volumes"] = [parse_volume(v, base_dir) for v in out["volumes"]]
    if "ulimits" in out:
        out["ulimits"] = {k: ({"soft": v, "hard": v} if isinstance(v, int) else v) for k, v in out["ulimits"].items()}
    if "extends" in out and isinstance(out["extends"], str):
        out["extends"] = {"service": out["extends"]}
    if "extends" in out and out["extends"].get("file"):
        out["extends"] = {**out["extends"], "file": resolve_path(out["extends"]["file"], base_dir)}
    return out


def split_command(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, list):
        return [str(v) for v in value]
    return shlex.split(str(value))


def finalize_service(name: str, svc: dict[str, Any], env: Mapping[str, str], project_dir: Path) -> dict[str, Any]:
    """Read env files into `environment`, resolve bare keys, split commands, add defaults."""
    out = dict(svc)
    if "build" in out:
        out["build"] = {"context": str(project_dir), "dockerfile": "Dockerfile", **out["build"]}
    environment: dict[str, Any] = {}
    for entry in out.pop("env_file", []) or []:
        path = Path(entry["path"])
        if not path.is_file():
            if entry.get("required", True):
                raise ComposeError(f"services.{name}.env_file: {path} not found")
            continue
        from berth.compose.envfile import read_env_file

        environment.update({k: v for k, v in read_env_file(path).items()})
    environment.update(out.get("environment", {}))
    for key, value in list(environment.items()):
        if value is None and key in env:
            environment[key] = env[key]
    if environment or "environment" in out:
        out["environment"] = environment
    for key in ("command", "entrypoint"):
        if key in out:
            out[key] = split_command(out[key])
    if "network_mode" not in out and not out.get("networks"):
        out["networks"] = {"default": None}
    out.pop("extends", None)
    return out
