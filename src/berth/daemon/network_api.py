"""The API's NetworkBackend over the network service and the containers it attaches."""

from __future__ import annotations

from typing import Any

from berth.common.errors import Conflict, InvalidParameter

from .containers import ContainerService
from .model import Container, prune_until, rfc3339_to_unix
from .network_state import Network
from .networks import NetworkService


class NetworkAPI:
    def __init__(self, svc: NetworkService, containers: ContainerService) -> None:
        self.svc = svc
        self.containers = containers

    def list_networks(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        cs = self.containers.all()
        out = []
        for n in sorted(self.svc.all(), key=lambda n: n.created):
            if not _matches(n, filters, self._in_use(n, cs)):
                continue
            view = self.svc.inspect_view(n, cs)
            view["Containers"] = {}  # as dockerd: the list leaves endpoints out
            out.append(view)
        return out

    def _in_use(self, n: Network, cs: list[Container]) -> bool:
        """As dockerd: a network is in use while a running container has an endpoint on it; one
        named only by stopped containers is dangling, and prune removes it."""
        return any(c.running for c in self.svc.users(n, cs))

    def inspect(self, ref: str) -> dict[str, Any]:
        return self.svc.inspect_view(self.svc.get(ref), self.containers.all())

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.svc.create(body)

    async def remove(self, ref: str) -> None:
        await self.svc.remove(ref, self.containers.all())

    async def prune(self, filters: dict[str, list[str]]) -> dict[str, Any]:
        until = prune_until(filters)
        cs = self.containers.all()
        deleted = []
        for n in list(self.svc.all()):
            if n.predefined or self._in_use(n, cs):
                continue
            if not _matches(n, {k: v for k, v in filters.items() if k in ("label", "label!")}, False):
                continue
            if until is not None and rfc3339_to_unix(n.created) > until:
                continue  # created after `until`: kept
            try:
                await self.svc.remove(n.id, cs)
            except Conflict:  # an overlay network in use on another engine
                continue
            deleted.append(n.name)
        return {"NetworksDeleted": deleted or None}

    async def connect(self, ref: str, container: str, endpoint_config: dict[str, Any]) -> None:
        n = self.svc.get(ref)
        c = self.containers.get(container)
        async with c.busy:
            await self.svc.connect(n, c, endpoint_config)
            self.containers._save(c)

    async def disconnect(self, ref: str, container: str, force: bool) -> None:
        n = self.svc.get(ref)
        c = self.containers.get(container)
        async with c.busy:
            await self.svc.disconnect(n, c)
            self.containers._save(c)


def _labels_match(labels: dict[str, str], wanted: list[str], negate: bool = False) -> bool:
    for w in wanted:
        k, sep, v = w.partition("=")
        hit = k in labels and (not sep or labels[k] == v)
        if hit == negate:
            return False
    return True


def _matches(n: Network, filters: dict[str, list[str]], used: bool) -> bool:
    if filters.get("name") and not any(f in n.name for f in filters["name"]):
        return False
    if filters.get("id") and not any(n.id.startswith(f) for f in filters["id"]):
        return False
    if filters.get("driver") and n.driver not in filters["driver"]:
        return False
    if filters.get("scope") and n.scope_view not in filters["scope"]:
        return False
    if filters.get("type"):
        kinds = set(filters["type"])
        if not kinds <= {"custom", "builtin"}:
            raise InvalidParameter(f"invalid filter: 'type'='{','.join(kinds)}'")
        if ("builtin" if n.predefined else "custom") not in kinds:
            return False
    if filters.get("dangling"):
        want = filters["dangling"][0].lower() in ("1", "true")
        if n.predefined or used == want:
            return False
    if filters.get("label") and not _labels_match(n.labels, filters["label"]):
        return False
    if filters.get("label!") and not _labels_match(n.labels, filters["label!"], negate=True):
        return False
    return True
