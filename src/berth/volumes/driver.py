"""The volume driver interface and the Volume record every driver returns.

Lifecycle of a volume: `create` -> (`mount`, `unmount`)* -> `remove`. A volume is mounted once
per reference (a container ID): the driver mounts its backing filesystem, if any, at the first
reference and releases it after the last. Which containers *use* a volume (and so keep it from
being removed) is the daemon's knowledge, not the driver's: a stopped container holds no mount
but still uses its volumes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

# docker marks volumes made for a container's anonymous mount points (and `POST /volumes/create`
# without a name) with this label; `volume prune` removes only those unless asked for all.
ANONYMOUS_LABEL = "com.docker.volume.anonymous"


@dataclass
class Volume:
    name: str
    driver: str
    mountpoint: str                 # the host directory a container's mount binds
    created_at: str                 # RFC 3339, as docker shows it
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    scope: str = "local"

    @property
    def anonymous(self) -> bool:
        return ANONYMOUS_LABEL in self.labels

    def to_api(self) -> dict[str, Any]:
        """The Engine API's Volume object."""
        return {"CreatedAt": self.created_at, "Driver": self.driver, "Labels": self.labels or None,
                "Mountpoint": self.mountpoint, "Name": self.name, "Options": self.options or None,
                "Scope": self.scope}


class VolumeDriver(Protocol):
    """A named-volume backend. Names are unique per driver; `get`/`remove` of an unknown name
    raise NotFound; `create` of an existing name returns that volume unchanged (as docker)."""

    name: str

    def create(self, name: str, options: dict[str, str], labels: dict[str, str]) -> Volume: ...

    def get(self, name: str) -> Volume: ...

    def list(self) -> list[Volume]: ...

    def remove(self, name: str) -> None:
        """Delete the volume and its data. The caller has checked that no container uses it."""
        ...

    def mount(self, name: str, ref: str) -> str:
        """Make the volume's data available for `ref`; returns the host path to bind."""
        ...

    def unmount(self, name: str, ref: str) -> None:
        """Drop `ref`'s mount; the last one releases a backing filesystem. Unknown refs are ignored."""
        ...

    def usage(self, name: str) -> int:
        """Bytes used by the volume's data (-1 when it cannot be told)."""
        ...
