"""The daemon's event bus: what `/events` streams, with history for `since`."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

HISTORY = 1024


def _matches(ev: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    for key, values in filters.items():
        if not values:
            continue
        actor = ev.get("Actor", {})
        attrs = actor.get("Attributes", {})
        if key == "type":
            ok = ev["Type"] in values
        elif key == "event":
            ok = ev["Action"].split(":")[0] in values or ev["Action"] in values
        elif key in ("container", "image", "volume", "network"):
            ok = ev["Type"] == key and any(
                v in (actor.get("ID"), attrs.get("name")) or actor.get("ID", "").startswith(v)
                or (key == "image" and v in (attrs.get("image"),)) for v in values)
            if key == "image" and not ok:
                ok = any(v == attrs.get("image") for v in values)
        elif key == "label":
            ok = all((attrs.get(v.split("=", 1)[0]) == v.split("=", 1)[1]) if "=" in v
                     else v in attrs for v in values)
        elif key == "scope":
            ok = "local" in values
        else:
            ok = True
        if not ok:
            return False
    return True


class EventBus:
    def __init__(self) -> None:
        self._history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()

    def publish(self, type_: str, action: str, actor_id: str, attributes: dict[str, str] | None = None) -> None:
        now = time.time_ns()
        ev: dict[str, Any] = {
            "Type": type_, "Action": action,
            "Actor": {"ID": actor_id, "Attributes": dict(attributes or {})},
            "scope": "local", "time": now // 1_000_000_000, "timeNano": now,
        }
        # pre-1.22 fields docker still sends for containers and images
        if type_ in ("container", "image"):
            ev["status"] = action
            ev["id"] = actor_id
            if type_ == "container" and attributes and "image" in attributes:
                ev["from"] = attributes["image"]
        self._history.append(ev)
        for q in self._subscribers:
            q.put_nowait(ev)

    async def subscribe(self, since: float | None, until: float | None,
                        filters: dict[str, list[str]]) -> AsyncIterator[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._subscribers.add(q)
        try:
            if since is not None:
                for ev in list(self._history):
                    t = ev["timeNano"] / 1e9
                    if t >= since and (until is None or t <= until) and _matches(ev, filters):
                        yield ev
            if until is not None and until <= time.time():
                return
            while True:
                timeout = None if until is None else max(0.0, until - time.time())
                try:
                    ev = await asyncio.wait_for(q.get(), timeout)
                except TimeoutError:
                    return
                if _matches(ev, filters):
                    yield ev
        finally:
            self._subscribers.discard(q)
