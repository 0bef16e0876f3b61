"""Stage 1: read a compose file as YAML 1.2 (ruamel.yaml), anchors and merge keys resolved.

YAML 1.2 matters: PyYAML's 1.1 turns `22:22` into 1342 and `yes` into True.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from berth.compose.errors import ComposeError


class Reset:
    """The value of a `!reset` tag: the merge removes the key from the base."""

    def __repr__(self) -> str:
        return "!reset"


class Override:
    """The value of an `!override` tag: the merge replaces the base value instead of merging."""

    def __init__(self, value: Any) -> None:
        self.value = value


def parse_yaml(text: str, origin: str) -> dict[str, Any]:
    """Parse one document; an empty file is an empty mapping; anything else must be a mapping."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    yaml = YAML(typ="safe", pure=True)
    yaml.version = (1, 2)

    def _reset(loader: Any, node: Any) -> Reset:
        return Reset()

    def _override(loader: Any, node: Any) -> Override:
        from ruamel.yaml.nodes import MappingNode, SequenceNode

        if isinstance(node, MappingNode):
            return Override(loader.construct_mapping(node, deep=True))
        if isinstance(node, SequenceNode):
            return Override(loader.construct_sequence(node, deep=True))
        return Override(loader.construct_scalar(node))

    yaml.constructor.add_constructor("!reset", _reset)
    yaml.constructor.add_constructor("!override", _override)
    try:
        doc = yaml.load(text)
    except YAMLError as exc:
        raise ComposeError(f"{origin}: invalid YAML: {exc}") from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ComposeError(f"{origin}: top-level object must be a mapping, got {type(doc).__name__}")
    return _plain(doc)


def _plain(value: Any) -> Any:
    """ruamel's safe loader already builds dicts and lists; keys become strings as compose wants."""
    if isinstance(value, dict):
        return {str(k) if not isinstance(k, str) else k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Override):
        return Override(_plain(value.value))
    return value


def load_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ComposeError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return parse_yaml(text, str(path))
