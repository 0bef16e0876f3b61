"""Builder flags (`COPY --from=x --link`) and the Go value syntaxes Dockerfiles borrow.

Flag rules follow BuildKit's BFlags: every flag starts with `--`; a string flag needs `=value`; a
bool flag takes nothing, `=true` or `=false`; only list flags (`--mount`, `--exclude`) may repeat.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_DURATION_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000,
                   "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)([a-zµμ]*)")


class FlagError(ValueError):
    """A bad builder flag; index is its position among the instruction's flags (-1: unknown)."""

    def __init__(self, message: str, index: int = -1) -> None:
        super().__init__(message)
        self.message = message
        self.index = index


class BuilderFlags:
    """Declare the flags an instruction accepts, then `parse` its `--x=y` words."""

    def __init__(self, args: list[str]) -> None:
        self.args = args
        self.kinds: dict[str, str] = {}
        self.values: dict[str, str] = {}
        self.lists: dict[str, list[str]] = {}
        self.used: set[str] = set()

    def add_string(self, name: str, default: str = "") -> None:
        self.kinds[name] = "string"
        self.values[name] = default

    def add_bool(self, name: str, default: bool = False) -> None:
        self.kinds[name] = "bool"
        self.values[name] = "true" if default else "false"

    def add_strings(self, name: str) -> None:
        self.kinds[name] = "strings"
        self.lists[name] = []

    def string(self, name: str) -> str:
        return self.values[name]

    def bool(self, name: str) -> bool:
        return self.values[name] == "true"

    def strings(self, name: str) -> list[str]:
        return list(self.lists[name])

    def parse(self) -> None:
        for index, arg in enumerate(self.args):
            if not arg.startswith("--"):
                raise FlagError(f"arg should start with -- : {arg}", index)
            if arg == "--":
                return
            name, has_value, value = arg[2:].partition("=")
            kind = self.kinds.get(name)
            if kind is None:
                raise FlagError(with_suggestion(f"unknown flag: {name}", name, self.kinds), index)
            if name in self.used and kind != "strings":
                raise FlagError(f"duplicate flag specified: {name}", index)
            self.used.add(name)
            if kind == "bool":
                if has_value and value == "":
                    raise FlagError(f"missing a value on flag: {name}", index)
                if value.lower() not in ("", "true", "false"):
                    raise FlagError(f"expecting boolean value for flag {name}, not: {value}", index)
                self.values[name] = "false" if value.lower() == "false" else "true"
            elif not has_value:
                raise FlagError(f"missing a value on flag: {name}", index)
            elif kind == "string":
                self.values[name] = value
            else:
                self.lists[name].append(value)


def suggest(value: str, options: Iterable[str]) -> str | None:
    """The closest option to a misspelt word, if it is close enough to be a typo."""
    value = value.lower()
    best, best_distance = None, 3
    for option in options:
        distance = _levenshtein(value, option.lower())
        if distance < best_distance and distance < max(len(value), 1):
            best, best_distance = option.lower(), distance
    return best


def with_suggestion(message: str, value: str, options: Iterable[str]) -> str:
    hint = suggest(value, options)
    return f"{message} (did you mean {hint}?)" if hint else message


def _levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def parse_go_duration(text: str) -> int:
    """Go's time.ParseDuration ("1m30s", "1.5h", "300ms", "0") in nanoseconds."""
    original = text
    sign = 1
    if text[:1] in "+-" and text:
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    if text == "0":
        return 0
    if not text:
        raise ValueError(f'time: invalid duration "{original}"')
    total = 0.0
    while text:
        match = _DURATION_PART.match(text)
        assert match is not None
        number, unit = match.groups()
        if number in ("", "."):
            raise ValueError(f'time: invalid duration "{original}"')
        if not unit:
            raise ValueError(f'time: missing unit in duration "{original}"')
        if unit not in _DURATION_UNITS:
            raise ValueError(f'time: unknown unit "{unit}" in duration "{original}"')
        total += float(number) * _DURATION_UNITS[unit]
        text = text[match.end():]
    return sign * int(round(total))


def format_go_duration(ns: int) -> str:
    """Go's Duration.String: "5m0s", "1h0m0s", "1.5s", "300ms", "0s"."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _trim_fraction(ns, size) + unit
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds = _trim_fraction(rest, 1_000_000_000) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{sign}{minutes}m{seconds}"
    return sign + seconds


def _trim_fraction(value: int, unit: int) -> str:
    whole, fraction = divmod(value, unit)
    if not fraction:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{fraction:0{digits}d}".rstrip("0")


_RAM = re.compile(r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$")


def ram_in_bytes(text: str) -> int:
    """go-units RAMInBytes: "64m", "1.5GiB", "512" (binary multiples)."""
    match = _RAM.match(text)
    if not match:
        raise ValueError(f"invalid size: '{text}'")
    power = " kmgtp".index((match.group(2) or " ").lower())
    return int(float(match.group(1)) * 1024 ** power)
