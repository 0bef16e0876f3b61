"""The loader pipeline: files -> YAML -> interpolate -> validate -> canonical -> include -> merge
-> extends -> profiles -> finalise -> model. Each stage is a function of its own module."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from berth.compose import naming
from berth.compose.envfile import project_environment
from berth.compose.errors import ComposeError
from berth.compose.interpolate import interpolate
from berth.compose.merge import merge_documents, merge_mappings, strip_tags
from berth.compose.model import Project, Resource, Service
from berth.compose.naming import DEFAULT_FILES, check_project_name, normalize_project_name
from berth.compose.normalize import canonical_service, finalize_service, resolve_path
from berth.compose.validate import validate
from berth.compose.yamlfile import load_yaml

_SECTIONS = ("services", "networks", "volumes", "secrets", "configs")
__all__ = ["DEFAULT_FILES", "LoadOptions", "check_project_name", "find_files", "load_project", "normalize_project_name"]


@dataclass
class LoadOptions:
    files: Sequence[str] = ()
    project_name: str | None = None
    project_directory: str | None = None
    env_files: Sequence[str] = ()
    profiles: Sequence[str] = ()
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    cwd: Path = field(default_factory=Path.cwd)


def find_files(opts: LoadOptions, env: Mapping[str, str]) -> list[Path]:
    return naming.find_files(opts.files, env, opts.cwd, opts.project_directory)


def load_file(path: Path, env: Mapping[str, str], base_dir: Path, stack: tuple[Path, ...] = ()) -> dict[str, Any]:
    """One file through interpolate, validate and canonicalise; its `include`s merged in."""
    path = path.resolve()
    if path in stack:
        raise ComposeError(f"{path}: include cycle: {' -> '.join(map(str, (*stack, path)))}")
    raw = load_yaml(path)
    doc = interpolate(raw, env, str(path))
    validate(doc, str(path))
    doc = dict(doc)
    doc["services"] = {name: canonical_service(svc or {}, base_dir) for name, svc in (doc.get("services") or {}).items()}
    for svc in doc["services"].values():
        svc.setdefault("__origin__", str(path))
    for section in ("secrets", "configs"):
        for entry in (doc.get(section) or {}).values():
            if isinstance(entry, dict) and entry.get("file"):
                entry["file"] = resolve_path(str(entry["file"]), base_dir)
    for entry in doc.pop("include", None) or []:
        doc = _include(doc, entry, env, base_dir, (*stack, path), str(path))
    return doc


def _include(doc: dict[str, Any], entry: Any, env: Mapping[str, str], base_dir: Path,
             stack: tuple[Path, ...], origin: str) -> dict[str, Any]:
    entry = {"path": entry} if isinstance(entry, str) else dict(entry)
    paths = entry["path"] if isinstance(entry["path"], list) else [entry["path"]]
    paths = [Path(p) if Path(p).is_absolute() else base_dir / p for p in paths]
    sub_dir = Path(entry["project_directory"]) if entry.get("project_directory") else paths[0].parent
    if not sub_dir.is_absolute():
        sub_dir = base_dir / sub_dir
    sub_env = dict(env)
    if entry.get("env_file"):
        files = entry["env_file"] if isinstance(entry["env_file"], list) else [entry["env_file"]]
        sub_env = project_environment(sub_dir, [str(base_dir / f) for f in files], env)
    elif (sub_dir / ".env").is_file():
        sub_env = project_environment(sub_dir, [], env)
    included: dict[str, Any] = {}
    for p in paths:
        included = merge_documents(included, load_file(p, sub_env, sub_dir, stack))
    for section in _SECTIONS:
        for key, value in (included.get(section) or {}).items():
            if doc.get(section) is None:
                doc[section] = {}
            mine = doc[section]
            if key in mine and section == "services":
                raise ComposeError(f"{origin}: include of {', '.join(map(str, paths))}: service {key!r} "
                                   "is already defined; an included service cannot be overridden")
            mine.setdefault(key, value)
    return doc


def resolve_extends(services: dict[str, dict[str, Any]], env: Mapping[str, str], base_dir: Path) -> dict[str, Any]:
    done: dict[str, dict[str, Any]] = {}

    def resolve(name: str, pool: dict[str, dict[str, Any]], stack: tuple[str, ...]) -> dict[str, Any]:
        if pool is services and name in done:
            return done[name]
        svc = pool[name]
        ext = svc.get("extends")
        if not ext:
            result = svc
        else:
            where = f"{svc.get('__origin__', '')}: services.{name}.extends"
            target = ext["service"]
            if ext.get("file"):
                other_path = Path(ext["file"])
                other = load_file(other_path, env, other_path.parent)["services"]
                key = (str(other_path), target)
                if "::".join(key) in stack:
                    raise ComposeError(f"{where}: circular extends: {' -> '.join(stack)}")
                if target not in other:
                    raise ComposeError(f"{where}: no service {target!r} in {other_path}")
                base = resolve(target, other, (*stack, "::".join(key)))
            else:
                if target in stack or target == name:
                    raise ComposeError(f"{where}: circular extends: {' -> '.join((*stack, name, target))}")
                if target not in services:
                    raise ComposeError(f"{where}: no service {target!r} to extend")
                base = resolve(target, services, (*stack, name))
            own = {k: v for k, v in svc.items() if k != "extends"}
            result = merge_mappings({k: v for k, v in base.items() if k != "__origin__"}, own)
        if pool is services:
            done[name] = result
        return result

    return {name: resolve(name, services, ()) for name in services}


def load_project(opts: LoadOptions) -> Project:
    """The whole pipeline for `-f` files, `-p`, `--env-file`, `--profile` and the environment."""
    first_guess = Path(opts.project_directory) if opts.project_directory else None
    env0 = project_environment(first_guess or opts.cwd, opts.env_files, opts.environ) \
        if (opts.env_files or first_guess) else dict(opts.environ)
    files = find_files(opts, env0)
    project_dir = (first_guess or files[0].parent).resolve()
    env = project_environment(project_dir, opts.env_files, opts.environ)
    doc: dict[str, Any] = {}
    for path in files:
        doc = merge_documents(doc, load_file(path, env, project_dir))
    doc = strip_tags(doc)
    services = resolve_extends(doc.get("services") or {}, env, project_dir)
    name = _project_name(opts, env, doc, project_dir)
    profiles = list(opts.profiles) or [p for p in env.get("COMPOSE_PROFILES", "").split(",") if p]
    enabled: dict[str, Service] = {}
    disabled: dict[str, Service] = {}
    for sname, raw in sorted(services.items()):
        raw = {k: v for k, v in raw.items() if k != "__origin__"}
        svc = Service(sname, finalize_service(sname, raw, env, project_dir))
        active = not svc.profiles or "*" in profiles or bool(set(svc.profiles) & set(profiles))
        (enabled if active else disabled)[sname] = svc
    _check_dependencies(enabled, disabled)
    networks = _resources(doc.get("networks") or {}, name, "network")
    used_networks = {n for s in enabled.values() for n in s.networks}
    for net in used_networks:
        if net == "default" and "default" not in networks:
            networks["default"] = Resource("default", f"{name}_default", False, {})
        elif net not in networks:
            raise ComposeError(f"service {next(s.name for s in enabled.values() if net in s.networks)!r} "
                               f"refers to undefined network {net!r}")
    volumes = _resources(doc.get("volumes") or {}, name, "volume")
    for svc in enabled.values():
        for vol in svc.config.get("volumes") or []:
            if vol.get("type") == "volume" and vol.get("source") and vol["source"] not in volumes:
                raise ComposeError(f"service {svc.name!r} refers to undefined volume {vol['source']!r}: "
                                   "declare it under the top-level `volumes:`")
    files_of = {section: {k: dict(v or {}) for k, v in (doc.get(section) or {}).items()}
                for section in ("secrets", "configs")}
    for svc in enabled.values():
        for section in ("secrets", "configs"):
            for ref in svc.config.get(section) or []:
                source = ref if isinstance(ref, str) else ref.get("source")
                if source not in files_of[section]:
                    raise ComposeError(f"service {svc.name!r} refers to undefined {section[:-1]} {source!r}")
    ext = {k: v for k, v in doc.items() if k.startswith("x-")}
    return Project(name, project_dir, [str(f.resolve()) for f in files], enabled, networks, volumes, ext, disabled,
                   files_of["secrets"], files_of["configs"])


def _project_name(opts: LoadOptions, env: Mapping[str, str], doc: dict[str, Any], project_dir: Path) -> str:
    return naming.project_name(opts.project_name, env, str(doc["name"]) if doc.get("name") else None, project_dir)


def _resources(section: dict[str, Any], project: str, what: str) -> dict[str, Resource]:
    out: dict[str, Resource] = {}
    for key, conf in section.items():
        conf = dict(conf or {})
        external = conf.get("external")
        if isinstance(external, dict):  # legacy `external: {name: x}`
            conf["name"] = external.get("name", conf.get("name"))
            external = True
        elif isinstance(external, str):  # `external: ${EXT}` after interpolation
            external = external.lower() in ("true", "yes", "1")
        name = conf.get("name") or (key if external else f"{project}_{key}")
        out[key] = Resource(key, str(name), bool(external), {k: v for k, v in conf.items() if k != "external"})
    return out


def _check_dependencies(enabled: dict[str, Service], disabled: dict[str, Service]) -> None:
    for svc in enabled.values():
        for dep in svc.depends_on:
            if dep.service in enabled:
                continue
            if dep.service in disabled:
                if dep.required:
                    raise ComposeError(f"service {svc.name!r} depends on {dep.service!r}, which is not "
                                       "enabled by the active profiles")
                continue
            if dep.required:
                raise ComposeError(f"service {svc.name!r} depends on undefined service {dep.service!r}")
        mode = str(svc.config.get("network_mode", ""))
        if mode.startswith("service:") and mode[8:] not in enabled:
            raise ComposeError(f"service {svc.name!r}: network_mode refers to undefined service {mode[8:]!r}")
