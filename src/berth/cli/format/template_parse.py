"""Parsing for the template subset (see `template`): lexing actions and building the node tree.

Pure; raises TemplateError on syntax errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from berth.cli.format.errors import TemplateError

# --- lexing ----------------------------------------------------------------------------------

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>"(?:[^"\\]|\\.)*")
      | (?P<raw>`[^`]*`)
      | (?P<num>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
      | (?P<var>\$[A-Za-z0-9_]*)
      | (?P<field>(?:\.[A-Za-z0-9_]+)+|\.)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<punct>:=|[|(),=])
    )""",
    re.X,
)


def _tokens(src: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(src):
        if src[pos:].strip() == "":
            break
        m = _TOKEN.match(src, pos)
        if not m or m.end() == pos:
            raise TemplateError(f"template: unexpected {src[pos:].strip()[:1]!r} in action {{{{{src}}}}}")
        kind = m.lastgroup or ""
        text = m.group(kind)
        # `$x.Field` lexes as a var followed by a field chain: fold them into one operand.
        if kind == "field" and out and out[-1][0] in ("var", "field_of") and src[m.start(kind) - 1] != " ":
            prev = out.pop()
            out.append(("field_of", prev[1] + text))
        else:
            out.append((kind, text))
        pos = m.end()
    return out


# --- parse tree ------------------------------------------------------------------------------


@dataclass
class Cmd:
    operands: list[tuple[str, Any]]


@dataclass
class Pipe:
    cmds: list[Cmd]
    decl: list[str] = field(default_factory=list)


@dataclass
class Node:
    kind: str  # text | action | if | range | with
    text: str = ""
    pipe: Pipe | None = None
    body: list[Node] = field(default_factory=list)
    else_body: list[Node] = field(default_factory=list)


class _Parser:
    def __init__(self, toks: list[tuple[str, str]]) -> None:
        self.toks = toks
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise TemplateError("template: unexpected end of action")
        self.i += 1
        return tok

    def pipeline(self, allow_decl: bool = False) -> Pipe:
        decl: list[str] = []
        if allow_decl:
            j = self.i
            names = []
            while j < len(self.toks) and self.toks[j][0] == "var":
                names.append(self.toks[j][1])
                j += 1
                if j < len(self.toks) and self.toks[j] == ("punct", ","):
                    j += 1
                    continue
                break
            if names and j < len(self.toks) and self.toks[j] == ("punct", ":="):
                decl, self.i = names, j + 1
        cmds = [self.command()]
        while self.peek() == ("punct", "|"):
            self.take()
            cmds.append(self.command())
        return Pipe(cmds, decl)

    def command(self) -> Cmd:
        operands: list[tuple[str, Any]] = []
        while (tok := self.peek()) is not None and tok not in (("punct", "|"), ("punct", ")")):
            kind, text = self.take()
            if kind == "punct" and text == "(":
                operands.append(("pipe", self.pipeline()))
                if self.take() != ("punct", ")"):
                    raise TemplateError("template: unclosed left paren")
            elif kind == "punct":
                raise TemplateError(f"template: unexpected {text!r} in operand")
            else:
                operands.append((kind, text))
        if not operands:
            raise TemplateError("template: missing value for command")
        return Cmd(operands)


def parse(src: str) -> list[Node]:
    """Parse a template into a node list; raises TemplateError on syntax errors."""
    root: list[Node] = []
    stack: list[tuple[Node | None, list[Node]]] = [(None, root)]
    pos = 0
    trim_next = False
    for m in _ACTION.finditer(src):
        text = src[pos : m.start()]
        if trim_next:
            text = text.lstrip()
        if m.group(1):
            text = text.rstrip()
        if text:
            stack[-1][1].append(Node("text", text=text))
        pos = m.end()
        trim_next = bool(m.group(3))
        body = m.group(2).strip()
        if body.startswith("/*"):
            continue
        toks = _tokens(body)
        if not toks:
            raise TemplateError("template: missing value for command")
        head = toks[0]
        if head == ("ident", "end"):
            if len(stack) == 1:
                raise TemplateError("template: unexpected {{end}}")
            # `else if` chains push implicit nodes that the one {{end}} closes too.
            while True:
                node, _ = stack.pop()
                if node is None or node.text != "elif":
                    break
        elif head == ("ident", "else"):
            node, _ = stack[-1]
            if node is None:
                raise TemplateError("template: unexpected {{else}}")
            stack[-1] = (node, node.else_body)
            if len(toks) > 1 and toks[1] == ("ident", "if"):
                nested = Node("if", text="elif", pipe=_Parser(toks[2:]).pipeline())
                node.else_body.append(nested)
                stack.append((nested, nested.body))
        elif head[0] == "ident" and head[1] in ("if", "range", "with"):
            p = _Parser(toks[1:])
            node = Node(head[1], pipe=p.pipeline(allow_decl=True))
            stack[-1][1].append(node)
            stack.append((node, node.body))
        else:
            p = _Parser(toks)
            stack[-1][1].append(Node("action", pipe=p.pipeline(allow_decl=True)))
    if len(stack) > 1:
        raise TemplateError("template: unexpected EOF (missing {{end}})")
    tail = src[pos:]
    if "{{" in tail:
        raise TemplateError("template: :1: unclosed action")
    if trim_next:
        tail = tail.lstrip()
    if tail:
        root.append(Node("text", text=tail))
    return root
