"""Classic Swarm's constraint/affinity expressions: parsing, matching, and carrying them in labels.

Grammar (as classic Swarm's `scheduler/filter/expr.go`): `key==value` or `key!=value`; a value led by
`~` is soft (only honoured while some node still satisfies it); a value between slashes is an
unanchored regular expression; otherwise the value is a glob matched against the whole string.
Compose's `deploy.placement.constraints` spelling (`node.labels.type == frontend`) is accepted too.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from berth.cluster.scheduler.errors import InvalidExpression

CONSTRAINTS_LABEL = "com.docker.swarm.constraints"
AFFINITIES_LABEL = "com.docker.swarm.affinities"
RESCHEDULE_LABEL = "com.docker.swarm.reschedule-policies"

# Swarm's own validation, kept so that what Swarm refused berth refuses too.
_KEY_RE = re.compile(r"^[a-z_][a-z0-9\-_.]+$", re.IGNORECASE)
_VALUE_RE = re.compile(r"^[=!/]?(~)?[a-z0-9:\-_\s.*/()?+\[\]\\^$|]+$", re.IGNORECASE)

# Compose and swarm-mode name the same things with prefixes; classic keys are bare.
_KEY_ALIASES = {"node.hostname": "node", "node.id": "node"}
_LABEL_PREFIXES = ("node.labels.", "engine.labels.")


class Op(Enum):
    EQ = "=="
    NE = "!="


@dataclass(frozen=True)
class Expr:
    key: str
    op: Op
    value: str
    soft: bool = False

    def matches(self, *candidates: str) -> bool:
        """True for `==` when any candidate matches, for `!=` when none does (Swarm's semantics)."""
        pattern, unanchored = _compile(self.value)
        if unanchored:
            hit = any(pattern.search(c) for c in candidates)
        else:
            hit = any(pattern.fullmatch(c) for c in candidates)
        return hit if self.op is Op.EQ else not hit

    def __str__(self) -> str:
        return f"{self.key}{self.op.value}{'~' if self.soft else ''}{self.value}"


def _is_regex(value: str) -> bool:
    return len(value) >= 2 and value.startswith("/") and value.endswith("/")


@functools.lru_cache(maxsize=512)
def _compile(value: str) -> tuple[re.Pattern[str], bool]:
    """The pattern and whether it is searched (a /regex/) rather than matched whole (a glob)."""
    if _is_regex(value):
        return re.compile(value[1:-1]), True
    # `*` and `?` are the glob; everything else is literal so `3.13*` does not treat `.` as any char.
    parts = [".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in value]
    return re.compile("".join(parts), re.DOTALL), False


def _normalise_key(key: str) -> str:
    key = key.strip().lower()
    if key in _KEY_ALIASES:
        return _KEY_ALIASES[key]
    for prefix in _LABEL_PREFIXES:
        if key.startswith(prefix) and len(key) > len(prefix):
            return key[len(prefix) :]
    return key


def parse_expr(text: str) -> Expr:
    """Parse one expression; raises InvalidExpression with Swarm's wording."""
    for op in Op:  # `==` before `!=`, as Swarm tries them
        if op.value not in text:
            continue
        raw_key, raw_value = text.split(op.value, 1)
        raw_key = raw_key.strip()
        if not _KEY_RE.match(raw_key):
            raise InvalidExpression(f"Key '{raw_key}' is invalid")
        raw_value = raw_value.strip()
        if not _VALUE_RE.match(raw_value):
            raise InvalidExpression(f"Value '{raw_value}' is invalid")
        soft = raw_value.startswith("~")
        value = raw_value.lstrip("~")
        if not value:
            raise InvalidExpression(f"Value '{raw_value}' is invalid")
        if _is_regex(value):
            try:
                re.compile(value[1:-1])
            except re.error as err:
                raise InvalidExpression(f"Value '{raw_value}' is not a valid regular expression: {err}") from err
        return Expr(_normalise_key(raw_key), op, value, soft)
    raise InvalidExpression("One of operator ==, != is expected")


def parse_exprs(texts: Iterable[str]) -> list[Expr]:
    return [parse_expr(t) for t in texts]


@dataclass(frozen=True)
class Placement:
    """What `extract_placement` pulled out of a create request."""

    env: tuple[str, ...]
    labels: dict[str, str]
    constraints: tuple[str, ...]
    affinities: tuple[str, ...]
    reschedule_policies: tuple[str, ...]


def _json_list(labels: Mapping[str, str], key: str) -> list[str]:
    raw = labels.get(key)
    if not raw:
        return []
    try:
        value = json.loads(raw)
    except ValueError:
        return []  # Swarm ignored an unreadable label rather than refusing the container
    return [str(v) for v in value] if isinstance(value, list) else []


def extract_placement(env: Sequence[str], labels: Mapping[str, str]) -> Placement:
    """Move `constraint:`/`affinity:`/`reschedule:` env entries into Swarm's labels.

    The labels are the record: they survive on the container, so a manager that restarts (or
    reschedules it) reads the placement back from them; the env entries would leak into the process.
    """
    constraints = _json_list(labels, CONSTRAINTS_LABEL)
    affinities = _json_list(labels, AFFINITIES_LABEL)
    reschedule = _json_list(labels, RESCHEDULE_LABEL)
    kept: list[str] = []
    for entry in env:
        kind, sep, rest = entry.partition(":")
        if sep and kind == "constraint":
            constraints.append(rest)
        elif sep and kind == "affinity":
            affinities.append(rest)
        elif sep and kind == "reschedule":
            reschedule.append(rest)
        else:
            kept.append(entry)
    out = dict(labels)
    for key, values in ((CONSTRAINTS_LABEL, constraints), (AFFINITIES_LABEL, affinities),
                        (RESCHEDULE_LABEL, reschedule)):
        if values:
            out[key] = json.dumps(values)
    return Placement(tuple(kept), out, tuple(constraints), tuple(affinities), tuple(reschedule))
