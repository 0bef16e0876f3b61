"""Stage 4: validation against the Compose Specification's JSON schema (Draft 7).

Each file is validated on its own, after interpolation and before merging, so an error names the
file it is in, the path inside the document and what the schema expected there.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from berth.compose.errors import ComposeError
from berth.compose.yamlfile import Override, Reset


@lru_cache(maxsize=1)
def _validator() -> Any:
    from jsonschema import Draft7Validator

    schema = json.loads(resources.files("berth.compose").joinpath("data/compose-spec.json").read_text())
    return Draft7Validator(schema)


def _strip_tags(value: Any) -> Any:
    if isinstance(value, Override):
        return _strip_tags(value.value)
    if isinstance(value, dict):
        return {k: _strip_tags(v) for k, v in value.items() if not isinstance(v, Reset)}
    if isinstance(value, list):
        return [_strip_tags(v) for v in value if not isinstance(v, Reset)]
    return value


def dotted(path: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def describe(error: Any) -> str:
    """One line: where, then what was expected, in words rather than schema jargon."""
    where = dotted(error.absolute_path)
    validator = error.validator
    if validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        pattern = error.schema.get("patternProperties")
        extra = [k for k in extra if not (pattern and any(re.match(p, k) for p in pattern))]
        names = ", ".join(repr(k) for k in extra) or "property"
        return f"{where}: additional property {names} is not allowed"
    if validator == "type":
        expected = error.validator_value
        return f"{where}: must be {_kinds(expected if isinstance(expected, list) else [expected])}, got {_kind(error.instance)} {error.instance!r}"
    if validator in ("oneOf", "anyOf"):
        subs = list(error.context or ())
        deeper = [e for e in subs if len(e.absolute_path) > len(error.absolute_path)]
        if deeper:
            # The value has the right shape for one branch: report what is wrong inside it.
            return describe(max(deeper, key=lambda e: len(e.absolute_path)))
        kinds: set[str] = set()
        for sub in subs:
            if sub.validator == "type":
                v = sub.validator_value
                kinds.update(v if isinstance(v, list) else [v])
        if kinds:
            return f"{where}: must be {_kinds(sorted(kinds))}, got {_kind(error.instance)} {error.instance!r}"
        return f"{where}: {error.message}"
    if validator == "required":
        return f"{where}: {error.message}"
    if validator == "enum":
        return f"{where}: must be one of {', '.join(map(str, error.validator_value))}, got {error.instance!r}"
    if validator == "pattern":
        return f"{where}: {error.instance!r} does not match {error.validator_value!r}"
    return f"{where}: {error.message}"


def _kinds(names: list[str]) -> str:
    """JSON schema type names as words: `a string or an array`."""
    return " or ".join(("an " if n[0] in "aeiou" else "a ") + n for n in names)


def _kind(value: Any) -> str:
    return {dict: "mapping", list: "sequence", str: "string", bool: "boolean", int: "integer",
            float: "number", type(None): "null"}.get(type(value), type(value).__name__)


def validate(doc: dict[str, Any], origin: str) -> None:
    plain = _strip_tags(doc)
    key = _cache_key(plain)
    if key is not None and _VALID_CACHE is not None and (_VALID_CACHE / key).exists():
        return
    errors = sorted(_validator().iter_errors(plain), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = [f"{origin}: {describe(e)}" for e in errors[:10]]
        raise ComposeError("invalid compose file:\n  " + "\n  ".join(lines) if len(lines) > 1 else
                           f"invalid compose file: {lines[0]}")
    if key is not None and _VALID_CACHE is not None:
        _remember(_VALID_CACHE, key)


# Documents that passed the schema, by digest: importing jsonschema and validating cost ~40 ms,
# paid by every command otherwise. Only successes are remembered (empty files named by the
# digest of the schema and the interpolated document), so errors are always reported in full.
def _cache_dir() -> Path | None:
    base = os.environ.get("XDG_CACHE_HOME") or (os.path.join(os.environ["HOME"], ".cache")
                                                 if os.environ.get("HOME") else None)
    return Path(base) / "berth" / "compose-valid" if base else None


_VALID_CACHE = _cache_dir()


def _remember(cache: Path, key: str, keep: int = 512) -> None:
    try:
        cache.mkdir(parents=True, exist_ok=True)
        (cache / key).touch()
        entries = list(os.scandir(cache))
        if len(entries) > keep:  # the oldest half goes
            entries.sort(key=lambda e: e.stat().st_mtime)
            for entry in entries[: len(entries) - keep // 2]:
                os.unlink(entry.path)
    except OSError:  # a read-only home, or a concurrent prune: the next run validates again
        pass


def _cache_key(plain: Any) -> str | None:
    try:
        text = json.dumps(plain, sort_keys=True)  # only JSON types: anything else is not keyed
    except (TypeError, ValueError):
        return None
    schema = resources.files("berth.compose").joinpath("data/compose-spec.json").read_bytes()
    return hashlib.sha256(hashlib.sha256(schema).digest() + text.encode()).hexdigest()
