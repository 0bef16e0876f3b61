"""The distribution spec's grammar for repository names, tags and digests (pure functions)."""

from __future__ import annotations

import re

from .errors import digest_invalid, name_invalid, tag_invalid

# From the spec: path components of lowercase alphanumerics joined by ., _, __ or runs of -.
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
TAG_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
# Only what we can verify: an algorithm we cannot hash is refused, not stored unchecked.
DIGEST_RE = re.compile(r"^(sha256):([a-f0-9]{64})$|^(sha512):([a-f0-9]{128})$")
# Looser shape, to tell "a digest we do not support" from "a tag" in a manifest reference.
DIGEST_SHAPE_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
MAX_NAME = 255
ALGORITHMS = ("sha256", "sha512")


def check_name(name: str) -> str:
    if len(name) > MAX_NAME or not NAME_RE.match(name):
        raise name_invalid(name)
    return name


def check_tag(tag: str) -> str:
    if not TAG_RE.match(tag):
        raise tag_invalid(tag)
    return tag


def check_digest(digest: str) -> tuple[str, str]:
    """(algorithm, hex) of a digest we can verify; DIGEST_INVALID otherwise."""
    m = DIGEST_RE.match(digest)
    if not m:
        raise digest_invalid(f"invalid or unsupported digest: {digest!r}", digest)
    algo, hexpart = digest.split(":", 1)
    return algo, hexpart


def is_digest_reference(reference: str) -> bool:
    """A manifest reference is a digest when it has a colon (tags never do)."""
    return ":" in reference and bool(DIGEST_SHAPE_RE.match(reference))


def paginate(items: list[str], n: int | None, last: str | None) -> tuple[list[str], bool]:
    """The page after `last` (exclusive) of at most `n` sorted items, and whether more follow."""
    items = sorted(items)
    if last:
        items = [i for i in items if i > last]
    if n is None or n < 0:
        return items, False
    return items[:n], n > 0 and len(items) > n  # n=0 asks for nothing, so no next page
