"""Human-readable durations, sizes and timestamps, with the thresholds and units docker prints.

Pure functions of their arguments (the caller passes "now"), so they are table-testable.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from berth.common.humanize import human_duration as human_duration  # re-exported for the CLI

_DECIMAL_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
_BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


def _scaled(size: float, base: float, units: tuple[str, ...]) -> tuple[float, str]:
    i = 0
    while size >= base and i < len(units) - 1:
        size /= base
        i += 1
    return size, units[i]


def human_size(size: float, precision: int = 3) -> str:
    """Decimal units with `precision` significant digits: 1.98MB, 0B, 12.3kB (docker images, ps -s)."""
    value, unit = _scaled(float(size), 1000.0, _DECIMAL_UNITS)
    return f"{value:.{precision}g}{unit}"


def bytes_size(size: float) -> str:
    """Binary units with 4 significant digits: 1.944GiB (docker info's Total Memory)."""
    value, unit = _scaled(float(size), 1024.0, _BINARY_UNITS)
    return f"{value:.4g}{unit}"


def parse_timestamp(text: str) -> float | None:
    """Parse the API's RFC 3339 (nanosecond) timestamps into epoch seconds; None for Go's zero time."""
    if not text or text.startswith("0001-01-01"):
        return None
    main, _, frac = text.partition(".")
    tz = "Z"
    if frac:
        digits = frac[: len(frac) - len(frac.lstrip("0123456789"))]
        tz = frac[len(digits) :] or "Z"
        fraction = float("0." + digits) if digits else 0.0
    else:
        if main.endswith("Z"):
            main = main[:-1]
        elif len(main) > 19:
            main, tz = main[:19], main[19:]
        fraction = 0.0
    tz = "+00:00" if tz == "Z" else tz
    try:
        dt = datetime.fromisoformat(main[:19] + tz)
    except ValueError:
        return None
    return dt.timestamp() + fraction


def go_time_string(epoch: float) -> str:
    """Go's time.Time.String() in local time, as `ps`/`images` print CreatedAt."""
    local = datetime.fromtimestamp(epoch, tz=UTC).astimezone()
    name = local.tzname() or time.strftime("%Z")
    return local.strftime("%Y-%m-%d %H:%M:%S %z ") + name
