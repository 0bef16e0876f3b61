"""Dockerfile text -> a list of `Node`s (one per instruction), as BuildKit's parser splits it.

This layer knows lines, parser directives (`# syntax=`, `# escape=`, `# check=`), comments, line
continuations, heredoc bodies, builder flags (`--from=x`) and how each instruction's arguments are
split (JSON array, whitespace, key=value words); it does not know what an instruction means.
`instructions_from` (parse.py) turns nodes into typed instructions.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from berth.build.errors import DockerfileError, ExpansionError
from berth.build.expand import Lexer

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_KNOWN_DIRECTIVES = ("escape", "syntax", "check")
_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_HEREDOC = re.compile(r"^(\d*)<<(-?)([^<]*)$")
_LEADING_TABS = re.compile(r"^\t+", re.MULTILINE)
_HEREDOC_COMMANDS = ("add", "copy", "run")
_NOT_STRING_ARRAY = "when using JSON array syntax, arrays must be comprised of strings only"


@dataclass(frozen=True)
class Heredoc:
    """A `<<EOF` body. expand is false when any part of the delimiter word was quoted."""

    name: str
    content: str = ""
    expand: bool = True
    chomp: bool = False  # `<<-EOF`: leading tabs are stripped from every line
    fd: int = 0

    @property
    def data(self) -> str:
        return chomp_heredoc(self.content) if self.chomp else self.content


@dataclass(frozen=True)
class ParseWarning:
    rule: str
    message: str
    line: int


@dataclass(frozen=True)
class Directives:
    escape: str = "\\"
    syntax: str | None = None
    check: str | None = None


@dataclass
class Node:
    """One instruction as written.

    args depend on the instruction: the JSON array or the shell string for RUN/CMD/ENTRYPOINT/
    SHELL; whitespace-split words for FROM/EXPOSE/COPY/ADD/VOLUME; (key, value, "=" or "")
    triples for ENV/LABEL; raw words for ARG; [TYPE, cmd...] for HEALTHCHECK; the whole rest for
    USER/WORKDIR/STOPSIGNAL/MAINTAINER; nothing for ONBUILD (see `trigger`).
    """

    keyword: str
    original: str
    line: int
    end_line: int
    column: int
    flags: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    json: bool = False
    heredocs: list[Heredoc] = field(default_factory=list)
    trigger: Node | None = None
    comments: list[str] = field(default_factory=list)
    flag_columns: list[tuple[int, int]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.keyword.lower()

    def error(self, reason: str, at: tuple[int, int] | None = None) -> DockerfileError:
        line, column = at or (self.line, self.column)
        return DockerfileError(reason, line, column, self.end_line)


@dataclass
class ParseResult:
    nodes: list[Node]
    directives: Directives
    warnings: list[ParseWarning]

    @property
    def escape(self) -> str:
        return self.directives.escape


def chomp_heredoc(content: str) -> str:
    return _LEADING_TABS.sub("", content)


def decode(data: bytes | str) -> str:
    text = data.decode("utf-8", errors="surrogateescape") if isinstance(data, bytes) else data
    return text.removeprefix("\ufeff")


def _physical_lines(text: str) -> list[str]:
    """Lines with their newline kept (heredoc bodies need it); only \\n ends a line, as in Go."""
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _is_comment(line: str) -> bool:
    return line.rstrip("\r\n").lstrip().startswith("#")


class _Spans:
    """Maps an offset in a joined logical line back to (physical line, column)."""

    def __init__(self) -> None:
        self.spans: list[tuple[int, int, int]] = []  # (offset, line, column at offset)

    def add(self, offset: int, line: int, column: int) -> None:
        self.spans.append((offset, line, column))

    def locate(self, offset: int) -> tuple[int, int]:
        best = self.spans[0]
        for span in self.spans:
            if span[0] <= offset:
                best = span
        return best[1], best[2] + offset - best[0]


class _DirectiveParser:
    def __init__(self) -> None:
        self.done = False
        self.seen: dict[str, str] = {}

    def feed(self, line: str, lineno: int) -> None:
        # Directives only count at the very top: the first line that is not one ends the search.
        if self.done:
            return
        match = _DIRECTIVE.match(line)
        if not match or match.group(1).lower() not in _KNOWN_DIRECTIVES:
            self.done = True
            return
        key = match.group(1).lower()
        if key in self.seen:
            raise DockerfileError(f"only one {key} parser directive can be used", lineno, 1)
        value = match.group(2)
        if key == "escape" and value not in ("`", "\\"):
            raise DockerfileError(f"invalid escape token '{value}' does not match ` or \\", lineno, 1)
        self.seen[key] = value

    @property
    def escape(self) -> str:
        return self.seen.get("escape", "\\")

    def result(self) -> Directives:
        return Directives(self.escape, self.seen.get("syntax"), self.seen.get("check"))


def parse(data: bytes | str) -> ParseResult:
    """Split a Dockerfile into instruction nodes. Raises DockerfileError with the position."""
    lines = _physical_lines(decode(data))
    directives = _DirectiveParser()
    nodes: list[Node] = []
    warnings: list[ParseWarning] = []
    comments: list[str] = []
    i = 0
    while i < len(lines):
        raw = lines[i]
        i += 1
        lineno = i
        stripped = raw.rstrip("\r\n").lstrip()
        directives.feed(stripped, lineno)
        if _is_comment(raw):
            text = stripped[1:].strip()
            comments = comments + [text] if text else []
            continue
        continuation = re.compile(re.escape(directives.escape) + r"[ \t]*$")
        spans = _Spans()
        column = len(raw.rstrip("\r\n")) - len(stripped) + 1
        spans.add(0, lineno, column)
        line, ended = _trim_continuation(stripped, continuation)
        if ended and not line:
            continue
        start_line, empty_continuation = lineno, False
        while not ended and i < len(lines):
            raw = lines[i]
            i += 1
            directives.feed(raw.rstrip("\r\n"), i)
            if _is_comment(raw):
                continue
            body = raw.rstrip("\r\n")
            if not body.strip():
                empty_continuation = True
                continue
            part, ended = _trim_continuation(body, continuation)
            spans.add(len(line), i, 1)
            line += part
        if empty_continuation:
            warnings.append(ParseWarning("NoEmptyContinuation",
                                         f"Empty continuation line found in: {line}", i))
        node = _node_from_line(line, directives.escape, spans, start_line, i, comments)
        if node.name in _HEREDOC_COMMANDS and not node.json and "<<" in line:
            try:
                docs = heredocs_from_line(line)
            except DockerfileError as exc:
                raise exc.located(start_line, node.column, i) from None
            for doc in docs:
                body_lines: list[str] = []
                while True:
                    if i >= len(lines):
                        raise DockerfileError("unterminated heredoc", start_line, node.column, i)
                    raw = lines[i]
                    i += 1
                    candidate = raw.rstrip("\r\n")
                    if doc.chomp:
                        candidate = candidate.lstrip("\t")
                    if candidate == doc.name:
                        break
                    body_lines.append(raw)
                node.heredocs.append(Heredoc(doc.name, "".join(body_lines), doc.expand, doc.chomp, doc.fd))
            node.end_line = i
        nodes.append(node)
        comments = []
    if not nodes:
        raise DockerfileError("file with no instructions", max(len(lines), 1), 1)
    return ParseResult(nodes, directives.result(), warnings)


def _trim_continuation(line: str, continuation: re.Pattern[str]) -> tuple[str, bool]:
    match = continuation.search(line)
    if match:
        return line[:match.start()], False
    return line, True


def heredocs_from_line(line: str) -> list[Heredoc]:
    """The heredoc markers (`<<EOF`, `<<-"EOF"`, `3<<EOF`) among the words of a line."""
    try:
        words = Lexer("\\", raw_quotes=True, raw_escapes=True).process_words(line, {})
    except ExpansionError:
        return []
    docs = [parse_heredoc(word) for word in words]
    return [doc for doc in docs if doc is not None]


def parse_heredoc(word: str) -> Heredoc | None:
    """A heredoc marker, or None when the word is not one. The body is filled in later."""
    match = _HEREDOC.match(word)
    if not match or not match.group(3):
        return None
    rest = match.group(3)
    try:
        words = Lexer("\\", skip_unset=True).process_words(rest, {})
        raw_words = Lexer("\\", skip_unset=True, raw_quotes=True).process_words(rest, {})
    except ExpansionError as exc:
        raise DockerfileError(exc.message) from None
    if len(words) != 1 or len(raw_words) != 1:
        return None
    name = words[0]
    quotes = name.count("'") + name.count('"')
    raw_quotes = raw_words[0].count("'") + raw_words[0].count('"')
    return Heredoc(name, expand=quotes == raw_quotes, chomp=match.group(2) == "-",
                   fd=int(match.group(1) or "0"))


def _node_from_line(line: str, escape: str, spans: _Spans, start_line: int, end_line: int,
                    comments: list[str], base: int = 0) -> Node:
    trimmed = line.strip()
    lead = len(line) - len(line.lstrip())
    parts = _WHITESPACE.split(trimmed, maxsplit=1)
    keyword = parts[0]
    kw_line, kw_col = spans.locate(base + lead)
    node = Node(keyword, line, start_line, end_line, kw_col if kw_line == start_line else 1,
                comments=list(comments))
    if len(parts) < 2:
        rest, rest_offset = "", len(line)
    else:
        args_offset = lead + len(trimmed) - len(parts[1])
        after, flags = extract_builder_flags(parts[1])
        node.flags = [f for f, _ in flags]
        node.flag_columns = [spans.locate(base + args_offset + off) for _, off in flags]
        rest = after.strip()
        rest_offset = args_offset + len(parts[1]) - len(after.lstrip())
    try:
        _split_args(node, rest, escape, spans, base + rest_offset)
    except DockerfileError as exc:
        raise exc.located(start_line, node.column, end_line) from None
    return node


def _split_args(node: Node, rest: str, escape: str, spans: _Spans, offset: int) -> None:
    name = node.name
    if name in ("add", "copy", "volume"):
        node.args, node.json = _maybe_json_list(rest)
    elif name in ("cmd", "entrypoint", "run", "shell"):
        node.args, node.json = _maybe_json(rest)
    elif name in ("expose", "from"):
        node.args = _WHITESPACE.split(rest) if rest else []
    elif name == "arg":
        node.args = parse_words(rest, escape)
    elif name in ("env", "label"):
        node.args = _name_values(rest, name.upper(), escape)
    elif name == "healthcheck":
        split = re.match(r"(\S*)\s*(.*)", rest, re.DOTALL)
        assert split is not None
        typ, cmd = split.group(1), split.group(2)
        if typ:
            cmd_args, node.json = _maybe_json(cmd)
            node.args = [typ, *cmd_args]
    elif name in ("maintainer", "stopsignal", "user", "workdir"):
        node.args = [rest] if rest else []
    elif name == "onbuild" and rest:
        node.trigger = _node_from_line(rest, escape, spans, node.line, node.end_line, [], offset)


def _maybe_json(rest: str) -> tuple[list[str], bool]:
    if not rest:
        return [], False
    parsed = _parse_json(rest)
    return (parsed, True) if parsed is not None else ([rest], False)


def _maybe_json_list(rest: str) -> tuple[list[str], bool]:
    parsed = _parse_json(rest)
    if parsed is not None:
        return parsed, True
    return (_WHITESPACE.split(rest) if rest else []), False


def _parse_json(rest: str) -> list[str] | None:
    rest = rest.lstrip()
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(v, str) for v in value):
        raise DockerfileError(_NOT_STRING_ARRAY)
    return value


def _name_values(rest: str, key: str, escape: str) -> list[str]:
    """ENV/LABEL: `K V` (legacy, value is the rest of the line) or `K=V K2="v 2"` words."""
    words = parse_words(rest, escape)
    if not words:
        return []
    if "=" not in words[0]:
        parts = _WHITESPACE.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise DockerfileError(f"{key} must have two arguments")
        return [parts[0], parts[1], ""]
    out: list[str] = []
    for word in words:
        if "=" not in word:
            raise DockerfileError(f"Syntax error - can't find = in {_go_q(word)}. Must be of the form: name=value")
        k, v = word.split("=", 1)
        out += [k, v, "="]
    return out


def _go_q(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def parse_words(rest: str, escape: str) -> list[str]:
    """Split on unquoted whitespace, keeping quotes and escapes (expansion removes them later)."""
    words: list[str] = []
    word = ""
    in_word = False
    quote = ""
    blank_ok = False
    i = 0
    while i < len(rest):
        ch = rest[i]
        if not in_word:
            if ch.isspace():
                i += 1
                continue
            in_word = True
        if not quote:
            if ch.isspace():
                if blank_ok or word:
                    words.append(word)
                word, blank_ok, in_word = "", False, False
                i += 1
                continue
            if ch in "'\"":
                quote, blank_ok = ch, True
            elif ch == escape:
                if i + 1 == len(rest):
                    i += 1
                    continue  # an escape token ending the line is dropped
                word += ch
                i += 1
                ch = rest[i]
            word += ch
        else:
            if ch == quote:
                quote = ""
            elif ch == escape and quote != "'":
                if i + 1 == len(rest):
                    i += 1
                    continue
                word += ch
                i += 1
                ch = rest[i]
            word += ch
        i += 1
    if in_word and (blank_ok or word):
        words.append(word)
    return words


def extract_builder_flags(line: str) -> tuple[str, list[tuple[str, int]]]:
    """Leading `--name[=value]` words (quotes and backslashes processed) and the rest of the line.

    Each flag comes with its offset in `line` so errors can point at it; `--` ends the flags.
    """
    flags: list[tuple[str, int]] = []
    pos = 0
    while True:
        while pos < len(line) and line[pos].isspace():
            pos += 1
        if pos >= len(line):
            return "", flags
        if not line.startswith("--", pos):
            return line[pos:], flags
        start = pos
        word, quote, blank_ok = "", "", False
        while pos < len(line):
            ch = line[pos]
            if quote:
                if ch == quote:
                    quote = ""
                    pos += 1
                    continue
            elif ch.isspace():
                break
            elif ch in "'\"":
                quote, blank_ok = ch, True
                pos += 1
                continue
            if ch == "\\":
                if pos + 1 == len(line):
                    pos += 1
                    continue
                pos += 1
                ch = line[pos]
            word += ch
            pos += 1
        if word == "--":
            return line[pos:], flags
        if blank_ok or word:
            flags.append((word, start))
