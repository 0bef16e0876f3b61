"""`$VAR` / `${VAR...}` expansion of Dockerfile words, with BuildKit's shell-lexer rules.

Supported forms: `$V`, `${V}`, `${V:-w}`, `${V-w}`, `${V:+w}`, `${V+w}`, `${V:?msg}`, `${V?msg}`,
`${V#glob}`, `${V##glob}`, `${V%glob}`, `${V%%glob}`, `${V/glob/repl}`, `${V//glob/repl}`.
Quotes are removed (single quotes keep everything literal; inside double quotes the escape token
only escapes `"`, `$` and itself), the escape token (`\\` or the `# escape=` one) escapes any
character outside quotes, and an escape token at the end of a word is dropped.

Which instructions expand which arguments is the caller's business (`stages` and `parse` know);
this module only turns one word into its value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from berth.build.errors import ExpansionError

_SPECIAL_PARAMS = frozenset("@*#?-$!0")


@dataclass(frozen=True)
class Expansion:
    """The value of a word and the variable names it referred to (for unused/undefined checks)."""

    value: str
    matched: frozenset[str] = frozenset()
    unmatched: frozenset[str] = frozenset()


@dataclass
class _Words:
    """Splits the processed text into words: unquoted whitespace separates, quoted text does not."""

    word: str = ""
    words: list[str] = field(default_factory=list)
    in_word: bool = False

    def add_char(self, ch: str) -> None:
        if ch.isspace():
            if self.in_word and self.word:
                self.words.append(self.word)
                self.word = ""
                self.in_word = False
        else:
            self.add_raw(ch)

    def add_raw(self, text: str) -> None:
        self.word += text
        self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def result(self) -> list[str]:
        if self.word:
            self.words.append(self.word)
            self.word = ""
            self.in_word = False
        return self.words


class Lexer:
    """A word processor configured like BuildKit's `shell.Lex`.

    raw_quotes keeps quote characters in the result; raw_escapes keeps escape tokens;
    skip_unset leaves `$V` of an unset V as written; skip_quotes treats quotes as plain text
    (heredoc bodies).
    """

    def __init__(self, escape: str = "\\", *, raw_quotes: bool = False, raw_escapes: bool = False,
                 skip_unset: bool = False, skip_quotes: bool = False) -> None:
        self.escape = escape
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_unset = skip_unset
        self.skip_quotes = skip_quotes

    def process_word(self, word: str, env: Mapping[str, str]) -> str:
        return self.process_word_with_matches(word, env).value

    def process_word_with_matches(self, word: str, env: Mapping[str, str]) -> Expansion:
        sw = _ShellWord(self, word, env)
        value, _ = sw.run()
        return Expansion(value, frozenset(sw.matched), frozenset(sw.unmatched))

    def process_words(self, word: str, env: Mapping[str, str]) -> list[str]:
        """The word split on unquoted whitespace, as EXPOSE and heredoc detection use it."""
        _, words = _ShellWord(self, word, env).run()
        return words


def expand(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """One word expanded with quote removal, as ENV, LABEL, WORKDIR, COPY ... expand theirs."""
    return Lexer(escape).process_word(word, env)


def expand_words(word: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    return Lexer(escape).process_words(word, env)


def expand_heredoc(body: str, env: Mapping[str, str]) -> str:
    """A `COPY <<EOF` body whose delimiter was unquoted: variables expand, quotes stay.

    Backslash escapes follow an unquoted shell heredoc: `\\$`, `\\\\` and `\\`` lose the
    backslash, any other backslash is kept (so `printf "a\\n"` survives).
    """
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body) and body[i + 1] in "$\\`":
            out.append(body[i + 1])
            i += 2
            continue
        if ch == "$":
            end = _dollar_end(body, i)
            out.append(Lexer(skip_quotes=True).process_word(body[i:end], env))
            i = end
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _dollar_end(text: str, start: int) -> int:
    """The end of the `$...` reference starting at text[start] (for heredoc bodies)."""
    i = start + 1
    if i < len(text) and text[i] == "{":
        depth = 0
        while i < len(text):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
        return len(text)
    if i < len(text) and (text[i] in _SPECIAL_PARAMS and not text[i].isdecimal()):
        return i + 1
    if i < len(text) and text[i].isdecimal():
        while i < len(text) and text[i].isdecimal():
            i += 1
        return i
    while i < len(text) and (text[i].isalnum() or text[i] == "_"):
        i += 1
    return i


class _ShellWord:
    def __init__(self, lex: Lexer, word: str, env: Mapping[str, str]) -> None:
        self.lex = lex
        self.source = word
        self.text = word
        self.pos = 0
        self.env = env
        self.matched: set[str] = set()
        self.unmatched: set[str] = set()

    # -- scanner
    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        ch = self.peek()
        if ch:
            self.pos += 1
        return ch

    def fail(self, reason: str) -> ExpansionError:
        return ExpansionError(reason, self.source)

    def run(self) -> tuple[str, list[str]]:
        return self.process_until("")

    def lookup(self, name: str) -> tuple[str, bool]:
        if name in self.env:
            self.matched.add(name)
            return self.env[name], True
        self.unmatched.add(name)
        return "", False

    # -- grammar
    def process_until(self, stop: str) -> tuple[str, list[str]]:
        result: list[str] = []
        words = _Words()
        while self.peek():
            ch = self.peek()
            if stop and ch == stop:
                self.next()
                return "".join(result), words.result()
            if ch == "$":
                text = self.process_dollar()
                result.append(text)
                words.add_string(text)
            elif ch in "'\"" and not self.lex.skip_quotes:
                text = self.process_single_quote() if ch == "'" else self.process_double_quote()
                result.append(text)
                words.add_raw(text)
            else:
                ch = self.next()
                if ch == self.lex.escape:
                    if self.lex.raw_escapes:
                        words.add_raw(ch)
                        result.append(ch)
                    ch = self.next()
                    if not ch:
                        break
                    words.add_raw(ch)
                else:
                    words.add_char(ch)
                result.append(ch)
        if stop:
            raise self.fail(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.result()

    def process_single_quote(self) -> str:
        # Everything up to the next ' is literal; a ' cannot be escaped inside.
        opening = self.next()
        out = [opening] if self.lex.raw_quotes else []
        while True:
            ch = self.next()
            if not ch:
                raise self.fail("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                if self.lex.raw_quotes:
                    out.append(ch)
                return "".join(out)
            out.append(ch)

    def process_double_quote(self) -> str:
        opening = self.next()
        out = [opening] if self.lex.raw_quotes else []
        while True:
            ch = self.peek()
            if not ch:
                raise self.fail("unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                self.next()
                if self.lex.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if ch == "$":
                out.append(self.process_dollar())
                continue
            ch = self.next()
            if ch == self.lex.escape:
                following = self.peek()
                if not following:
                    continue  # an escape token ending the word is dropped
                if following in ('"', "$", self.lex.escape):
                    if self.lex.raw_escapes:
                        out.append(ch)
                    ch = self.next()
            out.append(ch)

    def process_name(self) -> str:
        name: list[str] = []
        while self.peek():
            ch = self.peek()
            if not name and ch.isdecimal():
                while self.peek() and self.peek().isdecimal():
                    name.append(self.next())
                return "".join(name)
            if not name and ch in _SPECIAL_PARAMS:
                return self.next()
            if not (ch.isalpha() or ch.isdecimal() or ch == "_"):
                break
            name.append(self.next())
        return "".join(name)

    def process_dollar(self) -> str:
        self.next()
        if self.peek() != "{":
            name = self.process_name()
            if not name:
                return "$"
            value, found = self.lookup(name)
            if not found and self.lex.skip_unset:
                return "$" + name
            return value
        self.next()
        ch = self.peek()
        if not ch:
            raise self.fail("syntax error: missing '}'")
        if ch in "{}:":
            raise self.fail("syntax error: bad substitution")
        name = self.process_name()
        ch = self.next()
        if ch == "}":
            value, found = self.lookup(name)
            if not found and self.lex.skip_unset:
                return "${" + name + "}"
            return value
        if not ch:
            raise self.fail("syntax error: missing '}'")
        if ch == ":":
            return self.colon_modifier(name)
        if ch in "+-?":
            return self.plain_modifier(name, ch)
        if ch in "#%":
            return self.trim_modifier(name, ch)
        if ch == "/":
            return self.replace_modifier(name)
        raise self.fail(f"unsupported modifier ({ch}) in substitution")

    def modifier_word(self) -> str:
        if not self.peek():
            raise self.fail("syntax error: missing '}'")
        try:
            word, _ = self.process_until("}")
        except ExpansionError:
            if not self.peek():
                raise self.fail("syntax error: missing '}'") from None
            raise
        return word

    def colon_modifier(self, name: str) -> str:
        modifier = self.next()
        word = self.modifier_word()
        value, found = self.lookup(name)
        if not found and self.lex.skip_unset:
            return "${" + name + ":" + modifier + word + "}"
        if modifier == "+":
            return word if value else ""
        if modifier == "-":
            return value if value else word
        if modifier == "?":
            if not found:
                raise self.fail(f"{name}: {word or 'is not allowed to be unset'}")
            if not value:
                raise self.fail(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        raise self.fail(f"unsupported modifier ({modifier}) in substitution")

    def plain_modifier(self, name: str, modifier: str) -> str:
        word = self.modifier_word()
        value, found = self.lookup(name)
        if not found and self.lex.skip_unset:
            return "${" + name + modifier + word + "}"
        if modifier == "+":
            return word if found else ""
        if modifier == "-":
            return value if found else word
        if not found:
            raise self.fail(f"{name}: {word or 'is not allowed to be unset'}")
        return value

    def trim_modifier(self, name: str, kind: str) -> str:
        longest = self.peek() == kind
        if longest:
            self.next()
        pattern = self.modifier_word()
        value, found = self.lookup(name)
        if not found and self.lex.skip_unset:
            return "${" + name + kind * (2 if longest else 1) + pattern + "}"
        rx = glob_to_regex(pattern)
        cuts = range(len(value) + 1)
        if kind == "#":
            hits = [i for i in cuts if rx.fullmatch(value[:i])]
            return value[(max(hits) if longest else min(hits)):] if hits else value
        hits = [i for i in cuts if rx.fullmatch(value[i:])]
        return value[:(min(hits) if longest else max(hits))] if hits else value

    def replace_modifier(self, name: str) -> str:
        replace_all = self.peek() == "/"
        if replace_all:
            self.next()
        pattern, _ = self.process_until("/")
        replacement = self.modifier_word()
        value, found = self.lookup(name)
        if not found and self.lex.skip_unset:
            return "${" + name + ("//" if replace_all else "/") + pattern + "/" + replacement + "}"
        rx = glob_to_regex(pattern)
        return rx.sub(lambda _m: replacement, value, count=0 if replace_all else 1)


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """A shell pattern (`*`, `?`, `[...]`, `\\x`) as a regex; `*` is greedy, as in the shell."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        elif ch == "[" and (end := _class_end(pattern, i)) > 0:
            body = pattern[i + 1:end]
            negate = body[:1] in ("!", "^")
            body = body[1:] if negate else body
            out.append("[" + ("^" if negate else "") + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def _class_end(pattern: str, start: int) -> int:
    """The index of the `]` closing the bracket expression at pattern[start], or -1."""
    i = start + 1
    if pattern[i:i + 1] in ("!", "^"):
        i += 1
    if pattern[i:i + 1] == "]":
        i += 1  # a leading ] is a member, not the end
    end = pattern.find("]", i)
    return end
