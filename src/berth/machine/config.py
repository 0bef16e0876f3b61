"""machines.yml as a pipeline, the way compose loads its file: read YAML -> interpolate `${VAR}`
(the environment over `.env` beside the file) -> validate with the shipped JSON schema -> merge
`defaults:` into every machine -> validate each merged machine -> typed `MachineSpec`s.

Every error names the file, the line where known, and the path inside the document
(`machines.web-1.engine.labels[0]`). Never touches a machine.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

from .model import ClusterSpec, EngineSpec, MachineConfigError, MachineSpec

DEFAULT_FILE = "machines.yml"
DRIVER_OPTIONS = {"netns": ("address",), "ssh": ("host", "port", "user", "identity_file", "install_dir")}



# --- paths and lines -------------------------------------------------------------------------------

Path = tuple[str | int, ...]


def format_path(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _line_of(doc: Any, path: Path) -> int | None:
    """The 1-based line of `path` in a round-trip YAML document (ruamel keeps positions)."""
    node, line = doc, None
    for part in path:
        lc = getattr(node, "lc", None)
        try:
            if lc is not None:
                pos = lc.key(part) if isinstance(part, str) else lc.item(part)
                line = pos[0] + 1
            node = node[part]
        except (KeyError, IndexError, TypeError, AttributeError):
            break
    if line is None and getattr(doc, "lc", None) is not None:
        line = doc.lc.line + 1
    return line


def _where(filename: str, doc: Any, path: Path) -> str:
    line = _line_of(doc, path) if doc is not None else None
    return f"{filename}:{line}: {format_path(path)}" if line else f"{filename}: {format_path(path)}"


# --- interpolation ---------------------------------------------------------------------------------

def interpolate_string(value: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation, shared with compose files: `$VAR`, `${VAR}`, `${VAR:-default}`,
    `${VAR-default}`, `${VAR:?error}`, `${VAR?error}`, `${VAR:+alt}`, `$$`, nested in defaults
    (`${A:-${B}}`).

    An unset variable without a default becomes the empty string, as in compose. Raises
    ValueError with the `?` message (or a syntax complaint) for the caller to place.
    """
    from berth.compose.interpolate import InterpolationError, substitute

    if "$" not in value:
        return value
    try:
        return substitute(value, env)
    except InterpolationError as e:
        raise ValueError(str(e).removeprefix(": ")) from None


def interpolate(node: Any, env: Mapping[str, str], path: Path, where: Any) -> Any:
    """Interpolate every string value (not keys) of a plain document."""
    if isinstance(node, dict):
        return {k: interpolate(v, env, (*path, str(k)), where) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, env, (*path, i), where) for i, v in enumerate(node)]
    if isinstance(node, str):
        try:
            return interpolate_string(node, env)
        except ValueError as e:
            raise MachineConfigError(f"{where(path)}: {e}") from None
    return node


def environment(directory: str, environ: Mapping[str, str]) -> dict[str, str]:
    """`.env` in the file's directory, overridden by the real environment (compose's order)."""
    from dotenv import dotenv_values

    env: dict[str, str] = {}
    dotenv = os.path.join(directory, ".env")
    if os.path.isfile(dotenv):
        env.update({k: v for k, v in dotenv_values(dotenv).items() if v is not None})
    env.update(environ)
    return env


# --- schema ----------------------------------------------------------------------------------------

@cache
def schema() -> dict[str, Any]:
    text = resources.files("berth.machine").joinpath("machines.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _validate(instance: Any, subschema: dict[str, Any], base: Path, where: Any) -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(subschema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: (len(e.absolute_path), list(map(str,
                                                                                    e.absolute_path))))
    if not errors:
        return
    lines = []
    for err in errors[:10]:
        # the deepest, most specific complaint of a oneOf/anyOf is the useful one
        best = jsonschema.exceptions.best_match([err]) if err.context else err
        path = (*base, *best.absolute_path)
        extra = _unknown_keys(best)
        if len(extra) == 1:  # point at the key itself
            lines.append(f"{where((*path, extra[0]))}: unknown key")
        else:
            lines.append(f"{where(path)}: {_message(best)}")
    raise MachineConfigError("\n".join(dict.fromkeys(lines)))


def _unknown_keys(err: Any) -> list[str]:
    if err.validator != "additionalProperties" or not isinstance(err.instance, dict):
        return []
    allowed = set(err.schema.get("properties", {}))
    return sorted(str(k) for k in err.instance if k not in allowed)


def _message(err: Any) -> str:
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        extra = _unknown_keys(err)
        return f"unknown key{'s' if len(extra) > 1 else ''} {', '.join(map(repr, extra))}"
    if err.validator == "required":
        return err.message.replace("is a required property", "is required")
    if err.validator == "not" and err.instance and isinstance(err.instance, dict):
        driver = str(err.instance.get("driver"))
        wrong = sorted(k for k in err.instance if k not in DRIVER_OPTIONS.get(driver, ()) and k not in ("driver", "engine"))
        return f"{', '.join(wrong)}: not an option of driver {driver!r}"
    return str(err.message)


def _subschema(name: str) -> dict[str, Any]:
    s = schema()
    return {"$schema": s["$schema"], "$defs": s["$defs"], "$ref": f"#/$defs/{name}"}


# --- merge -----------------------------------------------------------------------------------------

def _labels(value: Any) -> dict[str, str]:
    if not value:
        return {}
    if isinstance(value, dict):
        return {str(k): _scalar(v) for k, v in value.items()}
    out: dict[str, str] = {}
    for item in value:
        k, _, v = str(item).partition("=")
        out[k] = v
    return out


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def merge_machine(defaults: dict[str, Any], machine: dict[str, Any]) -> dict[str, Any]:
    """The machine over its defaults: keys replace, except `engine` (labels and options merge by
    key, registry lists are joined without duplicates)."""
    out = {k: v for k, v in defaults.items() if k != "engine"}
    out.update({k: v for k, v in machine.items() if k != "engine"})
    d_eng, m_eng = defaults.get("engine") or {}, machine.get("engine") or {}
    if d_eng or m_eng:
        eng: dict[str, Any] = {**d_eng, **m_eng}
        if "labels" in d_eng or "labels" in m_eng:
            eng["labels"] = {**_labels(d_eng.get("labels")), **_labels(m_eng.get("labels"))}
        if "options" in d_eng or "options" in m_eng:
            eng["options"] = {**(d_eng.get("options") or {}), **(m_eng.get("options") or {})}
        for key in ("insecure_registries", "registry_mirrors"):
            if key in d_eng or key in m_eng:
                eng[key] = list(dict.fromkeys([*(d_eng.get(key) or []), *(m_eng.get(key) or [])]))
        out["engine"] = eng
    return out


# --- the pipeline ----------------------------------------------------------------------------------

def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def parse(text: str, filename: str, env: Mapping[str, str]) -> dict[str, MachineSpec]:
    """The machines a document declares, in file order."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        doc = YAML(typ="rt", pure=True).load(text)
    except YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f"{filename}:{mark.line + 1}" if mark is not None else filename
        raise MachineConfigError(f"{at}: invalid YAML: {getattr(e, 'problem', None) or e}") from None

    def where(path: Path) -> str:
        return _where(filename, doc, path)

    if doc is None:
        raise MachineConfigError(f"{filename}: the file is empty (it needs a `machines:` block)")
    data = interpolate(_plain(doc), env, (), where)
    for m in (data.get("machines") or {}).values() if isinstance(data, dict) else ():
        if isinstance(m, dict) and isinstance(m.get("port"), str) and m["port"].isdigit():
            m["port"] = int(m["port"])  # `port: ${SSH_PORT}` arrives as a string
    _validate(data, schema(), (), where)
    defaults = data.get("defaults") or {}
    specs: dict[str, MachineSpec] = {}
    addresses: dict[str, str] = {}
    for name, machine in (data.get("machines") or {}).items():
        merged = merge_machine(defaults, machine or {})
        _validate(merged, _subschema("resolved"), ("machines", name), where)
        options = {k: merged[k] for k in DRIVER_OPTIONS[merged["driver"]] if k in merged}
        if "address" in options:
            try:
                iface = ipaddress.IPv4Interface(options["address"])
            except ValueError as e:
                raise MachineConfigError(f"{where(('machines', name, 'address'))}: {e}") from None
            if iface.ip in (iface.network.network_address, iface.network.broadcast_address):
                raise MachineConfigError(f"{where(('machines', name, 'address'))}: {iface} is not a host address")
            if str(iface.ip) in addresses:
                raise MachineConfigError(f"{where(('machines', name, 'address'))}: {iface.ip} is already the "
                                         f"address of machine {addresses[str(iface.ip)]}")
            addresses[str(iface.ip)] = name
        eng = merged.get("engine") or {}
        engine = EngineSpec(_labels(eng.get("labels")), tuple(eng.get("insecure_registries") or ()),
                            tuple(eng.get("registry_mirrors") or ()), eng.get("data_root"),
                            dict(eng.get("options") or {}),
                            ClusterSpec.from_dict(eng["cluster"]) if eng.get("cluster") else None)
        specs[name] = MachineSpec(name, merged["driver"], options, engine)
    return specs


def load(path: str = DEFAULT_FILE, environ: Mapping[str, str] | None = None) -> dict[str, MachineSpec]:
    """Load machines.yml (and `.env` beside it)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise MachineConfigError(f"{path}: {e.strerror}") from None
    env = environment(os.path.dirname(os.path.abspath(path)), os.environ if environ is None else environ)
    return parse(text, path, env)
