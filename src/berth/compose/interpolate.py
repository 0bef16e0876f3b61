"""Stage 3: variable interpolation as the compose spec defines it.

`$V`, `${V}`, `${V:-d}` (unset or empty), `${V-d}` (unset), `${V:?e}`/`${V?e}` (fail),
`${V:+r}`/`${V+r}` (replacement), `$$` (a literal `$`); defaults and messages may nest
further interpolations (`${A:-${B:-x}}`). Applied to every string value, never to keys.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from berth.compose.errors import ComposeError
from berth.compose.yamlfile import Override

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPS = (":-", ":?", ":+", "-", "?", "+")


class InterpolationError(ComposeError):
    pass


def substitute(text: str, env: Mapping[str, str], where: str = "") -> str:
    """Expand one string; `where` ("file: services.web.image") prefixes any error."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c != "$":
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1] if i + 1 < n else ""
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "{":
            end = _closing_brace(text, i + 2)
            if end < 0:
                raise InterpolationError(f"{where}: invalid interpolation format: {text!r} (unclosed '${{')")
            out.append(_expand(text[i + 2:end], text, env, where))
            i = end + 1
        else:
            m = _NAME.match(text, i + 1)
            if m:
                out.append(env.get(m.group(), ""))
                i = m.end()
            else:
                out.append("$")
                i += 1
    return "".join(out)


def _closing_brace(text: str, start: int) -> int:
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
            continue
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _expand(expr: str, whole: str, env: Mapping[str, str], where: str) -> str:
    m = _NAME.match(expr)
    if not m:
        raise InterpolationError(f"{where}: invalid interpolation format: {whole!r} "
                                 "(a variable name must start with a letter or '_')")
    name, rest = m.group(), expr[m.end():]
    if not rest:
        return env.get(name, "")
    op = next((o for o in _OPS if rest.startswith(o)), None)
    if op is None:
        raise InterpolationError(f"{where}: invalid interpolation format: {whole!r}")
    arg = rest[len(op):]
    value = env.get(name)
    unset_or_empty = value is None or (op.startswith(":") and value == "")
    if op in (":-", "-"):
        return substitute(arg, env, where) if unset_or_empty else (value or "")
    if op in (":+", "+"):
        return "" if unset_or_empty else substitute(arg, env, where)
    if unset_or_empty:
        message = substitute(arg, env, where) or f"variable {name} is not set"
        state = "missing a value" if value is None else "empty"
        raise InterpolationError(f"{where}: required variable {name} is {state}: {message}")
    return value or ""


def interpolate(value: Any, env: Mapping[str, str], origin: str, path: str = "") -> Any:
    """Walk a loaded document, expanding every string; errors name `origin` and the dotted path."""
    if isinstance(value, str):
        return substitute(value, env, f"{origin}: {path}" if path else origin)
    if isinstance(value, dict):
        return {k: interpolate(v, env, origin, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, origin, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Override):
        return Override(interpolate(value.value, env, origin, path))
    return value
