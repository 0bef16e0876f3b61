"""A small evaluator for the Go-template subset docker users write in `--format` and `inspect -f`.

Supported: text with `{{...}}` actions (and `{{-`/`-}}` trimming); fields `.A.B`, `.`, `$`, `$var`;
string, number and bool literals; parenthesised pipelines and `|` pipes; `if`/`else if`/`else`,
`range` (with `$i, $v :=`), `with`, `end`; the functions docker adds (json, join, split, lower,
upper, title, pad, truncate, println) and Go's builtins (index, len, print, printf, not, and, or,
eq, ne, lt, le, gt, ge, slice). Values print as Go's `%v` would print the JSON-decoded data.

Pure: no I/O, no imports beyond the stdlib. Not the full Go template language (no `define`,
`template`, `block`, or method calls on arbitrary objects — but a callable field value is called
with the action's arguments, which is how table rows provide `{{.Label "key"}}`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from berth.cli.format.errors import TemplateError, TemplateSyntaxError
from berth.cli.format.template_parse import Cmd, Node, Pipe, parse

__all__ = ["Row", "Template", "TemplateError", "TemplateSyntaxError", "go_json", "go_str", "render"]


# --- values ----------------------------------------------------------------------------------


class _Missing:
    """A key absent from a map: Go prints it as `<no value>`."""

    def __repr__(self) -> str:
        return "<no value>"


MISSING = _Missing()


class Row(dict[str, Any]):
    """A table row: its keys are what `{{json .}}` shows; `methods` take arguments (`{{.Label "k"}}`)."""

    def __init__(self, fields: dict[str, Any], methods: dict[str, Callable[..., Any]] | None = None) -> None:
        super().__init__(fields)
        self.methods = methods or {}


def go_str(value: Any) -> str:
    """Format a value as Go's fmt `%v` prints JSON-decoded data."""
    if value is None or value is MISSING:
        return "<no value>" if value is MISSING else "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, dict):
        return "map[" + " ".join(f"{go_str(k)}:{go_str(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_str(v) for v in value) + "]"
    return str(value)


def _go_float(value: float) -> str:
    # Go's %v uses the shortest digits that round-trip, in exponent form when exp < -4 or >= 6 (strconv's %g).
    if value != value or value in (float("inf"), float("-inf")):
        return {"nan": "NaN", "inf": "+Inf", "-inf": "-Inf"}[repr(value)]
    from decimal import Decimal

    sign, digits, exp = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exp, int)
    text = "".join(map(str, digits))
    exp10 = len(text) + exp - 1
    prefix = "-" if sign else ""
    if exp10 < -4 or exp10 >= 6:
        mant = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{prefix}{mant}e{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"
    return prefix + format(Decimal(repr(abs(value))).normalize(), "f")


def go_json(value: Any) -> str:
    """docker's `json` template function: compact, UTF-8, no HTML escaping, nil as null."""
    if value is MISSING:
        value = None
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if isinstance(value, Row):
        # docker marshals a whole row through json.Marshal, which escapes HTML characters.
        text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text


def truthy(value: Any) -> bool:
    if value is MISSING or value is None:
        return False
    if isinstance(value, (bool, int, float, str, list, tuple, dict)):
        return bool(value)
    return True


# --- functions -------------------------------------------------------------------------------


def _index(item: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(item, dict):
            # Go's index on map[string]string yields "" for a missing key, not <no value>.
            item = item.get(key, "")
        elif isinstance(item, (list, tuple, str)):
            try:
                item = item[int(key)]
            except (IndexError, ValueError) as exc:
                raise TemplateError(f"error calling index: index out of range: {key}") from exc
        else:
            raise TemplateError(f"error calling index: cannot index {go_str(item)}")
    return item


def _printf(fmt: str, *args: Any) -> str:
    # Map Go verbs onto Python's %-formatting; %v and %q are the common ones in practice.
    out = []
    arg_iter = iter(args)
    i = 0
    while i < len(fmt):
        ch = fmt[i]
        if ch == "%" and i + 1 < len(fmt):
            m = re.match(r"%([-+ #0]*\d*(?:\.\d+)?)([vsdqfgxXte%])", fmt[i:])
            if m:
                flags, verb = m.groups()
                if verb == "%":
                    out.append("%")
                else:
                    arg = next(arg_iter, MISSING)
                    if verb == "q":
                        out.append(json.dumps(go_str(arg), ensure_ascii=False))
                    elif verb in "vst":
                        out.append(("%" + flags + "s") % go_str(arg))
                    else:
                        out.append(("%" + flags + verb) % arg)
                i += len(m.group(0))
                continue
        out.append(ch)
        i += 1
    return "".join(out)


def _cmp(op: Callable[[Any, Any], bool]) -> Callable[..., bool]:
    def fn(a: Any, *bs: Any) -> bool:
        return any(op(a, b) for b in bs) if op is _eq else op(a, bs[0])

    return fn


def _eq(a: Any, b: Any) -> bool:
    return bool(a == b)


FUNCS: dict[str, Callable[..., Any]] = {
    "json": go_json,
    "index": _index,
    "len": lambda v: len(v),
    "join": lambda items, sep: sep.join(go_str(i) for i in items),
    "split": lambda s, sep: s.split(sep),
    "lower": lambda s: go_str(s).lower(),
    "upper": lambda s: go_str(s).upper(),
    "title": lambda s: go_str(s).title(),
    "pad": lambda s, left, right: " " * int(left) + go_str(s) + " " * int(right),
    "truncate": lambda s, n: go_str(s)[: int(n)],
    "print": lambda *a: "".join(go_str(x) for x in a),
    "println": lambda *a: " ".join(go_str(x) for x in a) + "\n",
    "printf": _printf,
    "not": lambda v: not truthy(v),
    "and": lambda *a: next((x for x in a if not truthy(x)), a[-1]),
    "or": lambda *a: next((x for x in a if truthy(x)), a[-1]),
    "eq": _cmp(_eq),
    "ne": _cmp(lambda a, b: a != b),
    "lt": _cmp(lambda a, b: a < b),
    "le": _cmp(lambda a, b: a <= b),
    "gt": _cmp(lambda a, b: a > b),
    "ge": _cmp(lambda a, b: a >= b),
    "slice": lambda v, *ix: v[slice(*(int(i) for i in ix))],
}


# --- evaluation ------------------------------------------------------------------------------


class _Scope:
    def __init__(self, root: Any) -> None:
        self.vars: list[dict[str, Any]] = [{"$": root}]

    def get(self, name: str) -> Any:
        for frame in reversed(self.vars):
            if name in frame:
                return frame[name]
        raise TemplateError(f"template: undefined variable: {name}")


def _lookup(value: Any, path: str, args: list[Any]) -> Any:
    parts = [p for p in path.split(".") if p]
    for n, part in enumerate(parts):
        if isinstance(value, Row) and part in value.methods and part not in value:
            value = value.methods[part]
        elif isinstance(value, dict):
            value = value.get(part, MISSING)
        elif value is None or value is MISSING:
            # Go fails on a field of nil; docker users mostly want the empty result.
            raise TemplateError(
                f"template: executing at <.{'.'.join(parts[: n + 1])}>: nil pointer evaluating .{part}"
            )
        else:
            raise TemplateError(f"template: can't evaluate field {part} in type {type(value).__name__}")
        if callable(value):
            value = value(*args) if n == len(parts) - 1 else value()
    return value


class Template:
    """A parsed template; `render(data)` evaluates it against JSON-like data."""

    def __init__(self, src: str) -> None:
        self.src = src
        try:
            self.nodes = parse(src)
        except TemplateSyntaxError:
            raise
        except TemplateError as exc:
            raise TemplateSyntaxError(str(exc)) from exc
        self.funcs = FUNCS

    def render(self, data: Any, funcs: dict[str, Callable[..., Any]] | None = None) -> str:
        """Evaluate against `data`; `funcs` overrides builtins (table headers make them identity)."""
        out: list[str] = []
        self.funcs = FUNCS if funcs is None else {**FUNCS, **funcs}
        self._run(self.nodes, data, _Scope(data), out)
        return "".join(out)

    def _run(self, nodes: list[Node], dot: Any, scope: _Scope, out: list[str]) -> None:
        for node in nodes:
            if node.kind == "text":
                out.append(node.text)
                continue
            assert node.pipe is not None
            if node.kind == "action":
                value = self._pipe(node.pipe, dot, scope)
                if node.pipe.decl:
                    scope.vars[-1][node.pipe.decl[0]] = value
                else:
                    out.append(go_str(value))
            elif node.kind in ("if", "with"):
                value = self._pipe(node.pipe, dot, scope)
                if truthy(value):
                    self._run(node.body, value if node.kind == "with" else dot, scope, out)
                else:
                    self._run(node.else_body, dot, scope, out)
            elif node.kind == "range":
                self._range(node, dot, scope, out)

    def _range(self, node: Node, dot: Any, scope: _Scope, out: list[str]) -> None:
        assert node.pipe is not None
        value = self._pipe(node.pipe, dot, scope)
        if isinstance(value, dict):
            items = sorted(value.items())
        elif isinstance(value, (list, tuple)):
            items = list(enumerate(value))
        elif isinstance(value, int) and not isinstance(value, bool):
            items = [(i, i) for i in range(value)]
        elif value is None or value is MISSING:
            items = []
        else:
            raise TemplateError(f"template: range can't iterate over {go_str(value)}")
        if not items:
            self._run(node.else_body, dot, scope, out)
            return
        decl = node.pipe.decl
        for key, elem in items:
            frame: dict[str, Any] = {}
            if len(decl) == 1:
                frame[decl[0]] = elem
            elif len(decl) == 2:
                frame[decl[0]], frame[decl[1]] = key, elem
            scope.vars.append(frame)
            try:
                self._run(node.body, elem, scope, out)
            finally:
                scope.vars.pop()

    def _pipe(self, pipe: Pipe, dot: Any, scope: _Scope) -> Any:
        value: Any = MISSING
        for n, cmd in enumerate(pipe.cmds):
            extra = [value] if n > 0 else []
            value = self._cmd(cmd, dot, scope, extra)
        return value

    def _cmd(self, cmd: Cmd, dot: Any, scope: _Scope, piped: list[Any]) -> Any:
        kind, text = cmd.operands[0]
        args = [self._operand(op, dot, scope) for op in cmd.operands[1:]] + piped
        if kind == "ident" and text not in ("true", "false", "nil"):
            fn = self.funcs.get(text)
            if fn is None:
                raise TemplateError(f'template: function "{text}" not defined')
            try:
                return fn(*args)
            except TemplateError:
                raise
            except (TypeError, ValueError, AttributeError, KeyError) as exc:
                raise TemplateError(f"template: error calling {text}: {exc}") from exc
        if kind == "field":
            return dot if text == "." else _lookup(dot, text, args)
        if kind == "field_of":
            var, _, path = text.partition(".")
            return _lookup(scope.get(var), path, args)
        if args:
            raise TemplateError(f"template: can't give argument to non-function {text}")
        return self._operand((kind, text), dot, scope)

    def _operand(self, op: tuple[str, Any], dot: Any, scope: _Scope) -> Any:
        kind, text = op
        if kind == "str":
            return json.loads(text)
        if kind == "raw":
            return text[1:-1]
        if kind == "num":
            return float(text) if any(c in text for c in ".eE") else int(text)
        if kind == "var":
            return scope.get(text)
        if kind == "field":
            return dot if text == "." else _lookup(dot, text, [])
        if kind == "field_of":
            var, _, path = text.partition(".")
            return _lookup(scope.get(var), path, [])
        if kind == "pipe":
            return self._pipe(text, dot, scope)
        if kind == "ident":
            if text in ("true", "false"):
                return text == "true"
            if text == "nil":
                return None
            fn = self.funcs.get(text)
            if fn is None:
                raise TemplateError(f'template: function "{text}" not defined')
            return fn()
        raise TemplateError(f"template: unexpected operand {text!r}")


def render(src: str, data: Any) -> str:
    return Template(src).render(data)
