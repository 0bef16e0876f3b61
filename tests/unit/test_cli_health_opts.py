"""`run`/`create`'s --health-* and --log-opt flags as the docker CLI maps them."""

from __future__ import annotations

import pytest

from berth.cli.runopts import OptionError, RunOptions, create_body, parse_duration


def test_go_durations() -> None:
    assert [parse_duration(t, "--x") for t in ("1s", "500ms", "1m30s", "1.5s", "0", "-2s", "10us")] == [
        10**9, 5 * 10**8, 90 * 10**9, 15 * 10**8, 0, -2 * 10**9, 10_000]
    for bad in ("x", "1", "s", "1s2"):
        with pytest.raises(OptionError, match=f'invalid argument "{bad}" for "--x" flag: time: invalid duration'):
            parse_duration(bad, "--x")


def test_health_and_log_flags_in_the_body() -> None:
    body = create_body(RunOptions(image="b", health_cmd="test -f /ok", health_interval="1s", health_retries=2,
                                  log_opts=["max-size=1k", "labels"]), {})
    assert body["Healthcheck"] == {"Test": ["CMD-SHELL", "test -f /ok"], "Interval": 10**9, "Retries": 2}
    assert body["HostConfig"]["LogConfig"] == {"Type": "", "Config": {"max-size": "1k", "labels": ""}}
    assert create_body(RunOptions(image="b", no_healthcheck=True), {})["Healthcheck"] == {"Test": ["NONE"]}
    plain = create_body(RunOptions(image="b"), {})
    assert "Healthcheck" not in plain and "LogConfig" not in plain["HostConfig"]


@pytest.mark.parametrize("opts, message", [
    ({"no_healthcheck": True, "health_cmd": "true"}, "--no-healthcheck conflicts with --health-* options"),
    ({"health_interval": "-1s"}, "--health-interval cannot be negative"),
    ({"health_retries": -1}, "--health-retries cannot be negative"),
    ({"log_driver": "none", "log_opts": ["a=b"]}, "invalid logging opts for driver none"),
])
def test_bad_flags(opts: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(OptionError, match=message.replace("*", r"\*")):
        create_body(RunOptions(image="b", **opts), {})
