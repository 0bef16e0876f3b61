"""A project's containers as the engine lists them, filtered by the compose labels.

Kept apart from the executor so `ps` imports nothing but this and (on a unix socket) the
one-shot GET of berth.client.oneshot.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from berth.compose.labels import LABEL_NUMBER, LABEL_ONEOFF, LABEL_PROJECT, LABEL_SERVICE


def number(c: dict[str, Any]) -> int:
    try:
        return int(c["Labels"].get(LABEL_NUMBER, "0"))
    except ValueError:
        return 0


def _filters(project: str, oneoff: bool) -> dict[str, list[str]]:
    return {"label": [f"{LABEL_PROJECT}={project}", f"{LABEL_ONEOFF}={'True' if oneoff else 'False'}"]}


def _ordered(found: list[dict[str, Any]], services: Iterable[str]) -> list[dict[str, Any]]:
    wanted = set(services)
    if wanted:
        found = [c for c in found if c["Labels"].get(LABEL_SERVICE) in wanted]
    return sorted(found, key=lambda c: (c["Labels"].get(LABEL_SERVICE, ""), number(c)))


def project_containers(client: Any, project: str, services: Iterable[str] = (), all: bool = True,
                       oneoff: bool = False) -> list[dict[str, Any]]:
    """The project's containers (one-off `run` containers or the services'), by service then number."""
    return _ordered(client.containers.list(all=all, filters=_filters(project, oneoff)), services)


def project_containers_at(host: str | None, project: str, all: bool = True) -> list[dict[str, Any]]:
    """The same for `ps`, in one request without loading the HTTP client where the host allows."""
    from berth.client.oneshot import Unsupported, get_json

    query = f"filters={quote(json.dumps(_filters(project, False), separators=(',', ':')))}"
    try:
        return _ordered(get_json(host, f"/containers/json?{query}&all={int(all)}") or [], ())
    except Unsupported:
        from berth.client.api import APIClient

        return project_containers(APIClient(host), project, all=all)
