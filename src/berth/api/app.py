"""Assemble the Engine API: a router with every route, bound to the given backends."""

from __future__ import annotations

from .http.router import Router
from .routes import (
    archive,
    build,
    containers,
    distribution,
    execs,
    images,
    networks,
    resources,
    swarm,
    system,
    volumes,
)


def build_router(server_name: str, system_b: system.SystemBackend, containers_b: containers.ContainerBackend,
                 images_b: images.ImageBackend, execs_b: execs.ExecBackend,
                 volumes_b: volumes.VolumeBackend, *, archive_b: archive.ArchiveBackend | None = None,
                 commit_b: archive.CommitBackend | None = None,
                 resources_b: resources.ResourceBackend | None = None,
                 build_b: build.BuildBackend | None = None,
                 distribution_b: distribution.DistributionBackend | None = None,
                 networks_b: networks.NetworkBackend | None = None,
                 swarm_b: swarm.SwarmBackend | None = None) -> Router:
    r = Router(server_name)
    system.register(r, system_b)
    containers.register(r, containers_b)
    images.register(r, images_b)
    execs.register(r, execs_b)
    volumes.register(r, volumes_b)
    if archive_b is not None and commit_b is not None:
        archive.register(r, archive_b, commit_b)
    if resources_b is not None:
        resources.register(r, resources_b)
    if networks_b is not None:
        networks.register(r, networks_b)
    if swarm_b is not None:
        swarm.register(r, swarm_b)
    if build_b is not None:
        build.register(r, build_b)
    if distribution_b is not None:
        distribution.register(r, distribution_b)
    return r
