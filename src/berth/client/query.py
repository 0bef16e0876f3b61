"""Query-string and path encoding shared by every endpoint module."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

Params = Mapping[str, Any] | None


class Repeated(tuple[str, ...]):
    """A parameter sent once per value (`names=a&names=b`), unlike lists, which are sent as JSON."""


def encode_params(params: Params) -> str:
    """Encode as the docker CLI does: bools 1/0, dicts and lists as JSON, Repeated as repeated keys.

    None values are omitted so callers can pass every optional parameter unconditionally.
    """
    if not params:
        return ""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, Repeated):
            pairs.extend((key, v) for v in value)
        elif isinstance(value, bool):
            pairs.append((key, "1" if value else "0"))
        elif isinstance(value, (dict, list)):
            pairs.append((key, json.dumps(value, separators=(",", ":"))))
        else:
            pairs.append((key, str(value)))
    return urlencode(pairs)


def quote_path(segment: str) -> str:
    """Quote a name or ID for use as one path segment (image names contain `/` and `:`)."""
    return quote(segment, safe=":@")
