"""Turn rows into output for `--format`: docker's `table` mode, raw templates, `json`, `-q`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from berth.cli.format.table import align
from berth.cli.format.template import Row, Template


def _identity(value: Any, *_: Any) -> Any:
    return value


# In a header, functions show the header text unchanged, as docker's HeaderFunctions do.
HEADER_FUNCS: dict[str, Callable[..., Any]] = {
    name: _identity for name in ("json", "split", "join", "title", "lower", "upper", "pad", "truncate")
}


def unescape(fmt: str) -> str:
    """docker turns the two-character sequences `\\t` and `\\n` in --format into tab and newline."""
    return fmt.replace("\\t", "\t").replace("\\n", "\n")


def is_table(fmt: str) -> bool:
    return fmt == "table" or fmt.startswith("table ")


def render_rows(fmt: str, rows: Sequence[Row], headers: Row, default_table: str) -> str:
    """Render rows; `fmt` may be "", "table", "table TEMPLATE", "json" or a raw template.

    Returns the full text including the final newline (or "" when nothing is printed).
    """
    if not fmt or fmt == "table":
        fmt = default_table
    if fmt == "json":
        fmt = "{{json .}}"
    if is_table(fmt):
        tmpl = Template(unescape(fmt[len("table") :].strip()))
        lines = [tmpl.render(headers, funcs=HEADER_FUNCS)] + [tmpl.render(row) for row in rows]
        return align("\n".join(lines) + "\n")
    tmpl = Template(unescape(fmt))
    return "".join(tmpl.render(row) + "\n" for row in rows)


def header_row(names: dict[str, str], methods: Sequence[str] = ()) -> Row:
    """A row whose fields render as their column titles; `{{.Label "x"}}` heads its column "x"."""
    return Row(dict(names), {m: (lambda *args, _m=m: args[0] if args else _m.upper()) for m in methods})
