"""Composition root of the registry process: storage, service, auth and routes, wired once."""

from __future__ import annotations

from .auth import HtpasswdAuth
from .router import Router
from .routes_blobs import register as register_blobs
from .routes_manifests import register as register_manifests
from .service import Config, Registry


def build(config: Config, htpasswd: str | None = None) -> tuple[Registry, Router]:
    registry = Registry(config)
    router = Router(HtpasswdAuth(htpasswd) if htpasswd else None)
    register_manifests(router, registry)
    register_blobs(router, registry)
    return registry, router
