"""Assemble the Engine API: a router with every route, bound to the given backends."""

from __future__ import annotations

from .http.router import Router
from .routes import containers, execs, images, system


def build_router(server_name: str, system_b: system.SystemBackend, containers_b: containers.ContainerBackend,
                 images_b: images.ImageBackend, execs_b: execs.ExecBackend) -> Router:
    r = Router(server_name)
    system.register(r, system_b)
    containers.register(r, containers_b)
    images.register(r, images_b)
    execs.register(r, execs_b)
    return r
