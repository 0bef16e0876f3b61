"""`compose events`: the engine's container events for one project, as docker compose prints them.

Pure: the command hands in decoded `/events` messages; the label filter is applied by the daemon.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from berth.compose.labels import LABEL_SERVICE


def compose_event(msg: dict[str, Any], services: set[str]) -> dict[str, Any] | None:
    """A container event of one of `services` (any, if empty) with the compose labels left out;
    None for anything else."""
    if msg.get("Type", msg.get("type")) != "container":
        return None
    actor = msg.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    service = attrs.get(LABEL_SERVICE, "")
    if services and service not in services:
        return None
    nanos = msg.get("timeNano") or int(msg.get("time") or 0) * 1_000_000_000
    return {"time": datetime.fromtimestamp(nanos / 1e9, UTC), "type": "container", "service": service,
            "id": actor.get("ID") or msg.get("id", ""), "action": msg.get("Action") or msg.get("status", ""),
            "attributes": {k: v for k, v in attrs.items() if not k.startswith("com.docker.compose.")}}


def format_event(ev: dict[str, Any], as_json: bool) -> str:
    if as_json:
        return json.dumps({**ev, "time": ev["time"].isoformat().replace("+00:00", "Z")})
    attrs = ", ".join(f"{k}={v}" for k, v in sorted(ev["attributes"].items()))
    stamp = ev["time"].astimezone().strftime("%Y-%m-%d %H:%M:%S.%f")
    return f"{stamp} container {ev['action']} {ev['id']} ({attrs})"
