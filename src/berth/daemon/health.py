"""Health checks (HEALTHCHECK, `--health-*`), run as dockerd runs them.

A probe is an exec in the container (`CMD` as given, `CMD-SHELL` through the container's shell)
every interval; exit 0 is healthy, anything else (or the timeout) a failure. `retries` failures
in a row make the container unhealthy; failures within the start period do not count while it
is still starting. State.Health keeps the last 5 results with up to 4096 bytes of output each, and
each change of status is a `health_status: <status>` event. Probes run only while the container
runs unpaused; when they stop the status becomes `unhealthy` (dockerd does the same).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from berth.common.errors import BerthError, InvalidParameter

from .model import Container, rfc3339_to_unix

if TYPE_CHECKING:
    from .containers import ContainerService
    from .execs import ExecService

log = logging.getLogger("berth.health")

SECOND = 1_000_000_000
DEFAULT_INTERVAL = 30 * SECOND
DEFAULT_TIMEOUT = 30 * SECOND
DEFAULT_START_INTERVAL = 5 * SECOND
DEFAULT_RETRIES = 3
MIN_DURATION = 1_000_000  # 1ms, dockerd's container.MinimumDuration
MAX_LOG_ENTRIES = 5
MAX_OUTPUT = 4096
STATUSES = ("starting", "healthy", "unhealthy", "none")  # `none`: the ps filter's, no healthcheck

_DURATIONS = ("Interval", "Timeout", "StartPeriod", "StartInterval")


def merge_healthcheck(image: dict[str, Any] | None, requested: Any) -> dict[str, Any] | None:
    """The container's Healthcheck: the request's fields over the image's (dockerd's merge: a
    zero field takes the image's), checked as dockerd checks them at create."""
    if requested is not None and not isinstance(requested, dict):
        raise InvalidParameter("Healthcheck must be an object")
    if not requested:
        return dict(image) if image else None
    merged = dict(requested)
    for key in ("Test", *_DURATIONS, "Retries"):
        if not merged.get(key) and image and image.get(key):
            merged[key] = image[key]
    for key in _DURATIONS:
        value = merged.get(key) or 0
        if not isinstance(value, int):
            raise InvalidParameter(f"{key} in Healthcheck must be an integer (nanoseconds)")
        if value and value < MIN_DURATION:
            raise InvalidParameter(f"{key} in Healthcheck cannot be less than 1ms")
    retries = merged.get("Retries") or 0
    if not isinstance(retries, int):
        raise InvalidParameter("Retries in Healthcheck must be an integer")
    if retries < 0:
        raise InvalidParameter("Retries in Healthcheck cannot be negative")
    test = merged.get("Test")
    if test is not None and (not isinstance(test, list) or not all(isinstance(t, str) for t in test)):
        raise InvalidParameter("Test in Healthcheck must be a list of strings")
    return {k: v for k, v in merged.items() if v}  # dockerd's omitempty


def probe_command(config: dict[str, Any]) -> list[str] | None:
    """What a probe runs, or None when there is nothing to run (no test, `NONE`, an unknown type)."""
    test = (config.get("Healthcheck") or {}).get("Test") or []
    if not test or len(test) < 2:
        return None
    if test[0] == "CMD":
        return list(test[1:])
    if test[0] == "CMD-SHELL":
        return [*(config.get("Shell") or ["/bin/sh", "-c"]), *test[1:]]
    return None


def status_word(c: Container) -> str:
    """`healthy`, `unhealthy`, `starting`, or `none` when the container has no health state."""
    health = c.state.get("Health")
    return str(health["Status"]) if health else "none"


def go_duration(ns: int) -> str:
    """Go's time.Duration.String: `500ms`, `1s`, `1.5s`, `1m30s`."""
    if ns == 0:
        return "0s"
    if ns < 1000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return _decimal(ns, 1000) + "µs"
    if ns < SECOND:
        return _decimal(ns, 1_000_000) + "ms"
    hours, rest = divmod(ns, 3600 * SECOND)
    minutes, rest = divmod(rest, 60 * SECOND)
    out = f"{hours}h" if hours else ""
    if hours or minutes:
        out += f"{minutes}m"
    return out + _decimal(rest, SECOND) + "s"


def _decimal(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    digits = str(frac).rjust(len(str(unit)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)


def _timestamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1e9):09d}Z"


class HealthMonitor:
    """A ContainerWatcher: one probing task per running container that has a healthcheck."""

    def __init__(self, containers: ContainerService, execs: ExecService) -> None:
        self.containers = containers
        self.execs = execs
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def started(self, c: Container, resumed: bool = False) -> None:
        self._cancel(c)
        argv = probe_command(c.config)
        if argv is None:
            return
        health = c.state.get("Health")
        if not health or not resumed:
            # as dockerd's initHealthMonitor: starting again, the old results kept
            c.state["Health"] = {"Status": "starting", "FailingStreak": 0,
                                 "Log": list((health or {}).get("Log") or [])}
        self._tasks[c.id] = asyncio.get_running_loop().create_task(self._monitor(c, argv))

    def stopped(self, c: Container) -> None:
        self._cancel(c)
        if c.state.get("Health"):  # also for an exit seen only when berthd comes back
            c.state["Health"]["Status"] = "unhealthy"

    def _cancel(self, c: Container) -> None:
        task = self._tasks.pop(c.id, None)
        if task is not None:
            task.cancel()  # a probe under way finishes on its own (its exec is shielded)

    async def _monitor(self, c: Container, argv: list[str]) -> None:
        hc = c.config["Healthcheck"]
        interval = (hc.get("Interval") or DEFAULT_INTERVAL) / SECOND
        start_interval = (hc.get("StartInterval") or DEFAULT_START_INTERVAL) / SECOND
        start_period = (hc.get("StartPeriod") or 0) / SECOND
        timeout_ns = hc.get("Timeout") or DEFAULT_TIMEOUT
        started = rfc3339_to_unix(c.state["StartedAt"])
        while True:
            # dockerd (API 1.44+): the start interval while still starting within the start period
            in_start = time.time() - started < start_period and c.state["Health"]["Status"] == "starting"
            await asyncio.sleep(start_interval if in_start and hc.get("StartInterval") else interval)
            begin = time.time()
            try:
                code, output = await self._probe(c, argv, timeout_ns)
            except TimeoutError:
                code, output = -1, f"Health check exceeded timeout ({go_duration(timeout_ns)})"
            except BerthError as e:  # the container stopped under the probe, or the exec failed
                if not c.running:
                    return
                code, output = -1, e.message
            except OSError as e:  # the probe's files or processes; the next probe tries again
                log.warning("health probe of %s failed: %s", c.id[:12], e)
                code, output = -1, str(e)
            self._record(c, {"Start": _timestamp(begin), "End": _timestamp(time.time()),
                             "ExitCode": code, "Output": output}, begin - started, start_period, hc)

    async def _probe(self, c: Container, argv: list[str], timeout_ns: int) -> tuple[int, str]:
        code, out, truncated, failure = await self.execs.run_to_end(c, argv, timeout_ns / SECOND, MAX_OUTPUT)
        if failure is not None:  # dockerd: the exec's start error, as a probe that could not run
            return -1, f"OCI runtime exec failed: {failure}: unknown"
        return code, out.decode("utf-8", "replace") + ("..." if truncated else "")

    def _record(self, c: Container, result: dict[str, Any], since_start: float, start_period: float,
                hc: dict[str, Any]) -> None:
        """dockerd's handleProbeResult."""
        health = c.state.get("Health")
        if health is None or not c.running:
            return
        old = health["Status"]
        health["Log"] = [*health["Log"], result][-MAX_LOG_ENTRIES:]
        if result["ExitCode"] == 0:
            health["FailingStreak"] = 0
            health["Status"] = "healthy"
        elif not (old == "starting" and since_start < start_period):
            health["FailingStreak"] += 1
            retries = hc.get("Retries") or DEFAULT_RETRIES
            if health["FailingStreak"] >= retries:
                health["Status"] = "unhealthy"
        if health["Status"] != old:
            self.containers._save(c)  # results alone stay in memory, as dockerd's
            self.containers._event(c, "health_status: " + health["Status"])
