"""The normalised project: dataclasses over the canonical, merged, finalised compose document."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Dependency:
    service: str
    condition: str = "service_started"
    required: bool = True
    restart: bool = False


@dataclass
class Service:
    name: str
    config: dict[str, Any]

    @property
    def image(self) -> str | None:
        return self.config.get("image")

    @property
    def build(self) -> dict[str, Any] | None:
        return self.config.get("build")

    @property
    def depends_on(self) -> list[Dependency]:
        return [Dependency(name, d.get("condition", "service_started"), bool(d.get("required", True)),
                           bool(d.get("restart", False)))
                for name, d in (self.config.get("depends_on") or {}).items()]

    @property
    def networks(self) -> dict[str, dict[str, Any]]:
        return {k: dict(v or {}) for k, v in (self.config.get("networks") or {}).items()}

    @property
    def scale(self) -> int:
        if "scale" in self.config:
            return int(self.config["scale"])
        replicas = (self.config.get("deploy") or {}).get("replicas")
        return 1 if replicas is None else int(replicas)

    @property
    def profiles(self) -> list[str]:
        return list(self.config.get("profiles") or [])

    def image_name(self, project: str) -> str:
        """The image a container runs: `image:` if given, else the built `<project>-<service>`."""
        return self.image or f"{project}-{self.name}"


@dataclass
class Resource:
    """A top-level network or volume: its key in the file and its name on the engine."""

    key: str
    name: str
    external: bool
    config: dict[str, Any]


@dataclass
class Project:
    name: str
    working_dir: Path
    config_files: list[str]
    services: dict[str, Service]
    networks: dict[str, Resource] = field(default_factory=dict)
    volumes: dict[str, Resource] = field(default_factory=dict)
    extensions: dict[str, Any] = field(default_factory=dict)
    disabled: dict[str, Service] = field(default_factory=dict)
    secrets: dict[str, dict[str, Any]] = field(default_factory=dict)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def service(self, name: str) -> Service:
        from berth.compose.errors import ComposeError

        if name not in self.services:
            if name in self.disabled:
                raise ComposeError(f"service {name!r} is not enabled by the active profiles")
            raise ComposeError(f"no such service: {name}")
        return self.services[name]

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name}
        doc["services"] = {n: s.config for n, s in sorted(self.services.items())}
        if self.networks:
            doc["networks"] = {k: {"name": r.name, **({"external": True} if r.external else {}),
                                   **{a: b for a, b in r.config.items() if a not in ("name", "external")}}
                               for k, r in self.networks.items()}
        if self.volumes:
            doc["volumes"] = {k: {"name": r.name, **({"external": True} if r.external else {}),
                                  **{a: b for a, b in r.config.items() if a not in ("name", "external")}}
                              for k, r in self.volumes.items()}
        if self.secrets:
            doc["secrets"] = self.secrets
        if self.configs:
            doc["configs"] = self.configs
        doc.update(self.extensions)
        return doc

    def to_yaml(self) -> str:
        from ruamel.yaml import YAML

        yaml = YAML(typ="safe", pure=True)
        yaml.default_flow_style = False
        buf = io.StringIO()
        yaml.dump(_escape(self.to_dict()), buf)
        return buf.getvalue()


def _escape(value: Any) -> Any:
    """`$` as `$$`, so the printed model reads back (interpolated again) as the same model."""
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, dict):
        return {k: _escape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape(v) for v in value]
    return value
