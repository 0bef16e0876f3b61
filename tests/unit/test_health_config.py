"""Healthcheck config as dockerd merges and checks it, and Go's duration text in timeout messages."""

from __future__ import annotations

import pytest

from berth.common.errors import InvalidParameter
from berth.daemon.health import go_duration, merge_healthcheck, probe_command


def test_request_fields_over_the_image() -> None:
    image = {"Test": ["CMD-SHELL", "check"], "Interval": 30 * 10**9, "Retries": 4}
    assert merge_healthcheck(image, {"Interval": 10**8}) == {"Test": ["CMD-SHELL", "check"], "Interval": 10**8,
                                                              "Retries": 4}
    assert merge_healthcheck(image, None) == image
    assert merge_healthcheck(image, {"Test": ["NONE"]}) == {"Test": ["NONE"], "Interval": 30 * 10**9, "Retries": 4}
    assert merge_healthcheck(None, {"Test": ["CMD", "true"], "Timeout": 0}) == {"Test": ["CMD", "true"]}


@pytest.mark.parametrize("requested, message", [
    ({"Interval": 999_999}, "Interval in Healthcheck cannot be less than 1ms"),
    ({"Timeout": 1}, "Timeout in Healthcheck cannot be less than 1ms"),
    ({"StartPeriod": 5}, "StartPeriod in Healthcheck cannot be less than 1ms"),
    ({"Retries": -1}, "Retries in Healthcheck cannot be negative"),
    ({"Test": "true"}, "Test in Healthcheck must be a list of strings"),
])
def test_bad_values(requested: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(InvalidParameter, match=message):
        merge_healthcheck(None, requested)


def test_probe_commands() -> None:
    assert probe_command({"Healthcheck": {"Test": ["CMD-SHELL", "test -f /ok"]}}) == ["/bin/sh", "-c", "test -f /ok"]
    assert probe_command({"Healthcheck": {"Test": ["CMD", "true", "x"]}}) == ["true", "x"]
    assert probe_command({"Shell": ["/bin/bash", "-ec"], "Healthcheck": {"Test": ["CMD-SHELL", "x"]}}) == [
        "/bin/bash", "-ec", "x"]
    for test in (["NONE"], ["BOGUS", "x"], []):
        assert probe_command({"Healthcheck": {"Test": test}}) is None


def test_go_duration() -> None:
    assert [go_duration(ns) for ns in (300_000_000, 1_500_000_000, 90 * 10**9, 10**6, 1500, 3600 * 10**9, 0)] == [
        "300ms", "1.5s", "1m30s", "1ms", "1.5µs", "1h0m0s", "0s"]
