"""The API's VolumeBackend over the volume driver and the containers' mount points."""

from __future__ import annotations

from typing import Any

from berth.common.errors import InvalidParameter, NotFound
from berth.common.ids import new_id
from berth.volumes.driver import ANONYMOUS_LABEL, Volume, VolumeDriver

from .events import EventBus
from .mounts import MountManager


class VolumeAPI:
    def __init__(self, driver: VolumeDriver, mounts: MountManager, events: EventBus) -> None:
        self.driver = driver
        self.mounts = mounts
        self.events = events

    def _driver_for(self, name: str) -> VolumeDriver:
        if name and name != self.driver.name:
            raise NotFound(f'error looking up volume plugin {name}: plugin "{name}" not found')
        return self.driver

    def list_volumes(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        dangling = _bool_filter(filters.get("dangling"), "dangling")
        out = []
        for vol in sorted(self.driver.list(), key=lambda v: v.name):
            if dangling is not None and dangling == bool(self.mounts.users(vol.name)):
                continue
            if filters.get("name") and not any(n in vol.name for n in filters["name"]):
                continue
            if filters.get("driver") and vol.driver not in filters["driver"]:
                continue
            if filters.get("label") and not _labels_match(vol, filters["label"]):
                continue
            out.append(vol.to_api())
        return out

    def create(self, name: str, driver: str, options: dict[str, str], labels: dict[str, str]) -> dict[str, Any]:
        d = self._driver_for(driver)
        if not name:
            # an unnamed volume is anonymous (moby 23+): `volume prune` takes it by default
            name = new_id()
            labels = {**labels, ANONYMOUS_LABEL: ""}
        vol = d.create(name, options, labels)
        self.events.publish("volume", "create", vol.name, {"driver": vol.driver})
        return vol.to_api()

    def inspect(self, name: str) -> dict[str, Any]:
        return self.driver.get(name).to_api()

    def remove(self, name: str, force: bool) -> None:
        try:
            self.driver.get(name)
        except NotFound:
            if force:
                return
            raise
        self.mounts.check_unused(name)
        self.driver.remove(name)
        self.events.publish("volume", "destroy", name, {"driver": self.driver.name})

    def prune(self, filters: dict[str, list[str]], all_: bool) -> dict[str, Any]:
        deleted, reclaimed = [], 0
        for vol in self.driver.list():
            if not all_ and not vol.anonymous:
                continue
            if not _labels_match(vol, filters.get("label", [])):
                continue
            if any(_label_has(vol, item) for item in filters.get("label!", [])):
                continue
            if self.mounts.users(vol.name):
                continue
            size = max(self.driver.usage(vol.name), 0)
            self.driver.remove(vol.name)
            self.events.publish("volume", "destroy", vol.name, {"driver": vol.driver})
            deleted.append(vol.name)
            reclaimed += size
        self.events.publish("volume", "prune", "", {"reclaimed": str(reclaimed)})
        return {"VolumesDeleted": deleted or None, "SpaceReclaimed": reclaimed}



def volume_usage(mounts: MountManager) -> list[dict[str, Any]]:
    """Volumes with UsageData, for /system/df."""
    out = []
    for vol in mounts.driver.list():
        info = vol.to_api()
        info["UsageData"] = {"Size": mounts.driver.usage(vol.name), "RefCount": len(mounts.users(vol.name))}
        out.append(info)
    return out


def _bool_filter(values: list[str] | None, key: str) -> bool | None:
    if not values:
        return None
    v = values[-1].lower()
    if v in ("1", "true"):
        return True
    if v in ("0", "false"):
        return False
    raise InvalidParameter(f"invalid filter '{key}={values[-1]}'")


def _label_has(vol: Volume, item: str) -> bool:
    key, sep, val = item.partition("=")
    return key in vol.labels and (not sep or vol.labels[key] == val)


def _labels_match(vol: Volume, wanted: list[str]) -> bool:
    return all(_label_has(vol, item) for item in wanted)
