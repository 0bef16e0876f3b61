"""Time values as docker's GetTimestamp reads them: the CLI's `--since`/`--until` (sent as Unix
seconds) and the daemon's `until` prune filters.

Accepts a Unix timestamp (`1700000000`, `1700000000.5`), an RFC 3339 date or date-time, or a
duration relative to now (`10m`, `1h30m`, `45s`).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float | None:
    """Go's time.ParseDuration subset: `1h30m`, `10s`, `250ms`. None if `text` is not one."""
    pos, total = 0, 0.0
    while pos < len(text):
        m = _DURATION.match(text, pos)
        if not m:
            return None
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    return total if text else None


def api_time(value: str | None, now: float | None = None) -> str | None:
    if value is None or value == "":
        return None
    now = time.time() if now is None else now
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return value
    duration = parse_duration(value)
    if duration is not None:
        return _seconds(now - duration)
    text = value.replace("Z", "+00:00")
    for candidate in (text, text + "T00:00:00"):
        try:
            dt = datetime.fromisoformat(candidate)
        except ValueError:
            continue
        if dt.tzinfo is None:
            # docker reads a zone-less date-time in the client's local zone.
            dt = dt.astimezone()
        return _seconds(dt.astimezone(UTC).timestamp())
    raise ValueError(f'failed to parse value as time or duration: "{value}"')


def until_filter(filters: dict[str, list[str]], now: float | None = None) -> float | None:
    """A prune's `until` filter as Unix seconds (the earliest of several), None without one; what
    was created after it stays. A bad value raises ValueError with dockerd's message."""
    values = filters.get("until") or []
    if not values:
        return None
    return min(float(api_time(v, now) or 0) for v in values)


def _seconds(epoch: float) -> str:
    whole = int(epoch)
    nanos = int(round((epoch - whole) * 1e9))
    return f"{whole}.{nanos:09d}"
