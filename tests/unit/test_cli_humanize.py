"""Durations, sizes and timestamps printed as docker prints them."""

from __future__ import annotations

import pytest

from berth.cli.format.humanize import bytes_size, human_duration, human_size, parse_timestamp
from berth.common.timefilter import api_time, parse_duration


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "Less than a second"),
        (0.9, "Less than a second"),
        (1, "1 second"),
        (5, "5 seconds"),
        (59, "59 seconds"),
        (60, "About a minute"),
        (119, "About a minute"),
        (120, "2 minutes"),
        (59 * 60, "59 minutes"),
        (60 * 60, "About an hour"),
        (89 * 60, "About an hour"),
        (91 * 60, "2 hours"),
        (47 * 3600, "47 hours"),
        (48 * 3600, "2 days"),
        (13 * 86400, "13 days"),
        (14 * 86400, "2 weeks"),
        (59 * 86400, "8 weeks"),
        (60 * 86400, "2 months"),
        (729 * 86400, "24 months"),
        (730 * 86400, "2 years"),
    ],
)
def test_human_duration(seconds: float, expected: str) -> None:
    assert human_duration(seconds) == expected


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (0, "0B"),
        (999, "999B"),
        (1000, "1kB"),
        (1984234, "1.98MB"),
        (12_345, "12.3kB"),
        (999_500, "1e+03kB"),
        (5_000_000_000, "5GB"),
        (77_800_000, "77.8MB"),
    ],
)
def test_human_size(size: int, expected: str) -> None:
    assert human_size(size) == expected


def test_virtual_size_has_four_digits() -> None:
    assert human_size(1984234, 4) == "1.984MB"


def test_bytes_size_is_binary() -> None:
    assert bytes_size(25_275_000_000) == "23.54GiB"
    assert bytes_size(512) == "512B"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-01T00:00:00Z", 1704067200.0),
        ("2024-01-01T00:00:00.5Z", 1704067200.5),
        ("2024-01-01T01:00:00.000000000+01:00", 1704067200.0),
        ("0001-01-01T00:00:00Z", None),
        ("", None),
    ],
)
def test_parse_timestamp(text: str, expected: float | None) -> None:
    assert parse_timestamp(text) == expected


def test_since_until_values() -> None:
    now = 1_700_000_000.0
    assert api_time("1699999999") == "1699999999"
    assert api_time("10m", now=now) == "1699999400.000000000"
    assert api_time("1h30m", now=now) == "1699994600.000000000"
    assert api_time("2024-01-01T00:00:00Z") == "1704067200.000000000"
    assert api_time(None) is None
    assert parse_duration("250ms") == 0.25
    assert parse_duration("abc") is None
    with pytest.raises(ValueError):
        api_time("yesterday")
