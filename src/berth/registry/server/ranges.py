"""HTTP `Range: bytes=...` for blob downloads (pure; one range only, as registries serve)."""

from __future__ import annotations


class Unsatisfiable(ValueError):
    pass


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) inclusive for a single byte range, None to send the whole blob.

    A header we cannot read is ignored (RFC 9110 lets a server do that); a readable range that
    selects nothing raises `Unsatisfiable` (416).
    """
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_s, sep, last_s = spec.strip().partition("-")
    if not sep or not (first_s.isdigit() or first_s == "") or not (last_s.isdigit() or last_s == ""):
        return None
    if first_s == "":
        if last_s == "":
            return None
        suffix = int(last_s)
        if suffix == 0 or size == 0:
            raise Unsatisfiable(header)
        return max(size - suffix, 0), size - 1
    first = int(first_s)
    last = int(last_s) if last_s else size - 1
    if first >= size or last < first:
        raise Unsatisfiable(header)
    return first, min(last, size - 1)
