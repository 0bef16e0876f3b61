"""Stage 6: merging several files (`-f a -f b`), `extends` and `include`, by the spec's rules.

Inputs are canonical (see `normalize.canonical_service`). Rules (compose-spec `13-merge.md`):
mappings merge key by key, the override winning; `command`, `entrypoint` and `healthcheck.test`
are replaced; `ports` merge by (host_ip, target, published, protocol), `volumes` by target,
`secrets`/`configs` by target or source; other sequences are appended without duplicates;
`!reset` removes a value and `!override` replaces it whole.
"""

from __future__ import annotations

from typing import Any

from berth.compose.yamlfile import Override, Reset

REPLACED = {"command", "entrypoint", "test"}


def _port_key(p: Any) -> Any:
    return (p.get("host_ip", ""), p.get("target"), str(p.get("published", "")), p.get("protocol", "tcp"))


def _volume_key(v: Any) -> Any:
    return v.get("target")


def _secret_key(s: Any) -> Any:
    return s if isinstance(s, str) else s.get("target") or s.get("source")


KEYED = {"ports": _port_key, "volumes": _volume_key, "secrets": _secret_key, "configs": _secret_key}


def merge_keyed(base: list[Any], override: list[Any], key: Any) -> list[Any]:
    out = {key(item): item for item in base}
    for item in override:
        k = key(item)
        out[k] = merge_values(out[k], item, "") if k in out and isinstance(item, dict) else item
    return list(out.values())


def merge_values(base: Any, override: Any, field: str) -> Any:
    if isinstance(override, Override):
        return override.value
    if field in REPLACED:
        return override
    if isinstance(base, dict) and isinstance(override, dict):
        return merge_mappings(base, override)
    if isinstance(base, list) and isinstance(override, list):
        if field in KEYED:
            return merge_keyed(base, override, KEYED[field])
        out = list(base)
        out.extend(item for item in override if item not in out)
        return out
    return override


def merge_mappings(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Reset):
            out.pop(key, None)
        elif key in out and out[key] is not None and value is not None:
            out[key] = merge_values(out[key], value, key)
        elif key in out and value is None and isinstance(out[key], dict):
            continue  # `networks: {front: }` over `front: {aliases: [...]}` keeps the aliases
        else:
            out[key] = value.value if isinstance(value, Override) else value
    return out


def merge_documents(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge two whole canonical compose documents; top-level sections merge per entry."""
    return merge_mappings(base, override)


def strip_tags(value: Any) -> Any:
    """Remove `!reset`/`!override` markers left where nothing was merged."""
    if isinstance(value, Override):
        return strip_tags(value.value)
    if isinstance(value, dict):
        return {k: strip_tags(v) for k, v in value.items() if not isinstance(v, Reset)}
    if isinstance(value, list):
        return [strip_tags(v) for v in value if not isinstance(v, Reset)]
    return value
