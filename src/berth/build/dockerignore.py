""".dockerignore: reading the file and matching context paths, as docker's patternmatcher does.

Patterns are Go filepath.Match globs over `/`-separated paths relative to the context: `*` and
`?` never cross `/`, `**` matches any number of directories, `[...]` classes, `\\` escapes. A
pattern also excludes everything under a directory it matches. Later patterns win, and `!pattern`
re-includes. A Dockerfile may have its own `<Dockerfile>.dockerignore` next to it.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass

from berth.common.errors import InvalidParameter

DEFAULT_NAME = ".dockerignore"


class BadPattern(InvalidParameter):
    pass


def go_clean(path: str) -> str:
    """Go's path.Clean: like normpath, but `//x` is `/x` and "" is "."."""
    cleaned = posixpath.normpath(path) if path else "."
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def read_patterns(data: bytes | str) -> list[str]:
    """The patterns of a .dockerignore file, cleaned, comments and blank lines dropped.

    Only a `#` in the first column starts a comment; a leading `/` is dropped (patterns are
    relative to the context either way).
    """
    text = data.decode("utf-8", errors="surrogateescape") if isinstance(data, bytes) else data
    text = text.removeprefix("\ufeff")
    patterns: list[str] = []
    for line in text.split("\n"):
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = go_clean(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
    return patterns


@dataclass(frozen=True)
class Pattern:
    text: str  # cleaned, without the leading `!`
    exclusion: bool
    regex: re.Pattern[str]

    def match(self, path: str) -> bool:
        return self.regex.match(path) is not None


class PatternMatcher:
    """Decides whether a context path is excluded by a list of patterns."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns: list[Pattern] = []
        for raw in patterns:
            text = raw.strip()
            if not text:
                continue
            text = go_clean(text)
            exclusion = text.startswith("!")
            if exclusion:
                if len(text) == 1:
                    raise BadPattern('illegal exclusion pattern: "!"')
                text = text[1:]
            self.patterns.append(Pattern(text, exclusion, compile_pattern(text)))

    @property
    def exclusions(self) -> bool:
        return any(p.exclusion for p in self.patterns)

    def matches(self, path: str) -> bool:
        """Whether path (relative, `/`-separated) is excluded, itself or through a parent dir."""
        path = go_clean(path)
        parent = posixpath.dirname(path) or "."
        parent_dirs = parent.split("/")
        matched = False
        for pattern in self.patterns:
            # Only a pattern that could change the answer needs evaluating.
            if pattern.exclusion != matched:
                continue
            hit = pattern.match(path)
            if not hit and parent != ".":
                hit = any(pattern.match("/".join(parent_dirs[:i + 1])) for i in range(len(parent_dirs)))
            if hit:
                matched = not pattern.exclusion
        return matched

    def can_skip_dir(self, path: str) -> bool:
        """An excluded directory can be skipped whole unless an exclusion may re-include inside."""
        if not self.matches(path):
            return False
        prefix = go_clean(path) + "/"
        return not any(p.exclusion and (p.text + "/").startswith(prefix) for p in self.patterns)


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """A cleaned pattern as an anchored regex; raises BadPattern where Go's Match would."""
    out = ["^"]
    i = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                i += 2
                if i < n and pattern[i] == "/":
                    i += 1
                # `**` at the end matches everything; elsewhere any number of directories.
                out.append(".*" if i >= n else "(.*/)?")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            if i + 1 >= n:
                raise BadPattern(f"syntax error in pattern: {pattern}")
            i += 1
            out.append(re.escape(pattern[i]))
        elif ch == "[":
            cls, i = _char_class(pattern, i)
            out.append(cls)
            continue
        else:
            out.append(re.escape(ch))
        i += 1
    out.append("$")
    return re.compile("".join(out), re.DOTALL)


def _char_class(pattern: str, start: int) -> tuple[str, int]:
    """`[^a-z\\]]` -> a regex class and the index after `]`, with Go's syntax checks."""
    bad = BadPattern(f"syntax error in pattern: {pattern}")
    i = start + 1
    negate = pattern[i:i + 1] == "^"
    if negate:
        i += 1
    parts: list[str] = []
    while True:
        if i >= len(pattern):
            raise bad
        if pattern[i] == "]" and parts:
            return "[" + ("^" if negate else "") + "".join(parts) + "]", i + 1
        lo, i = _class_char(pattern, i, bad)
        if pattern[i:i + 1] == "-":
            hi, i = _class_char(pattern, i + 1, bad)
            parts.append(re.escape(lo) + "-" + re.escape(hi))
        else:
            parts.append(re.escape(lo))


def _class_char(pattern: str, i: int, bad: BadPattern) -> tuple[str, int]:
    if i >= len(pattern) or pattern[i] in "-]":
        raise bad
    if pattern[i] == "\\":
        i += 1
        if i >= len(pattern):
            raise bad
    return pattern[i], i + 1


def candidates(dockerfile: str = "Dockerfile") -> list[str]:
    """Ignore files to try, first found wins: `<Dockerfile>.dockerignore`, then `.dockerignore`.

    dockerfile is the Dockerfile's path relative to the context (as `-f` gives it).
    """
    name = go_clean(dockerfile.replace("\\", "/")).lstrip("/")
    if not name or name == "." or name.startswith("../"):
        return [DEFAULT_NAME]
    return [name + DEFAULT_NAME, DEFAULT_NAME]


def keep_build_files(patterns: list[str], dockerfile: str = "Dockerfile") -> list[str]:
    """The docker CLI never drops .dockerignore or the Dockerfile from the context it sends."""
    patterns = list(patterns)
    matcher = PatternMatcher(patterns)
    if matcher.matches(DEFAULT_NAME):
        patterns.append("!" + DEFAULT_NAME)
    dockerfile = dockerfile.replace("\\", "/")
    if PatternMatcher(patterns).matches(dockerfile):
        patterns.append("!" + dockerfile)
    return patterns
