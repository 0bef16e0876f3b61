"""Networks, volumes and images a project needs, made through the client (labelled for compose)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from berth.client.api import APIClient
from berth.client.errors import ClientError
from berth.compose import convert
from berth.compose.errors import ComposeError
from berth.compose.model import Project, Resource, Service

Emit = Callable[[str], None]
T = TypeVar("T")


def _each(items: list[T], fn: Callable[[T], None]) -> None:
    """fn over items at once: the daemon sets up bridges and volumes concurrently."""
    if len(items) <= 1:
        for item in items:
            fn(item)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        for future in [pool.submit(fn, item) for item in items]:
            future.result()


def ensure_networks(client: APIClient, project: Project, emit: Emit) -> None:
    _each(list(project.networks.items()), lambda item: _ensure_network(client, project, *item, emit))


def _ensure_network(client: APIClient, project: Project, key: str, net: Resource, emit: Emit) -> None:
    try:
        info = client.networks.inspect(net.name)
    except ClientError as exc:
        if exc.status != 404:
            raise
        info = None
    if net.external:
        if info is None:
            raise ComposeError(f"network {net.name} declared as external, but could not be found")
        return
    if info is not None:
        return
    c = net.config
    body: dict[str, Any] = {
        "Name": net.name, "Driver": c.get("driver") or "bridge", "CheckDuplicate": True,
        "Internal": bool(c.get("internal")), "Attachable": bool(c.get("attachable")),
        "Options": c.get("driver_opts") or {},
        "Labels": {**{str(k): str(v) for k, v in _kv(c.get("labels")).items()},
                   convert.LABEL_PROJECT: project.name, convert.LABEL_NETWORK: key,
                   convert.LABEL_VERSION: convert.COMPOSE_VERSION},
    }
    ipam = c.get("ipam") or {}
    if ipam:
        body["IPAM"] = {"Driver": ipam.get("driver") or "default",
                        "Config": [{_camel(k): v for k, v in e.items()} for e in ipam.get("config") or []]}
    client.networks.create(body)
    emit(f" Network {net.name}  Created")


def ensure_volumes(client: APIClient, project: Project, emit: Emit) -> None:
    _each(list(project.volumes.items()), lambda item: _ensure_volume(client, project, *item, emit))


def _ensure_volume(client: APIClient, project: Project, key: str, vol: Resource, emit: Emit) -> None:
    try:
        client.volumes.inspect(vol.name)
        return
    except ClientError as exc:
        if exc.status != 404:
            raise
    if vol.external:
        raise ComposeError(f"external volume {vol.name!r} not found")
    c = vol.config
    labels = {**{str(k): str(v) for k, v in _kv(c.get("labels")).items()},
              convert.LABEL_PROJECT: project.name, convert.LABEL_VOLUME: key,
              convert.LABEL_VERSION: convert.COMPOSE_VERSION}
    client.volumes.create(vol.name, c.get("driver") or "local",
                          {str(k): str(v) for k, v in (c.get("driver_opts") or {}).items()}, labels)
    emit(f" Volume {vol.name}  Created")


def build(client: APIClient, project: Project, svc: Service, emit: Emit, nocache: bool = False) -> None:
    from berth.client.stream import iter_json
    from berth.compose.buildctx import context_tar  # tarfile: only when building

    b = svc.build or {}
    root = Path(b["context"])
    if not root.is_dir():
        raise ComposeError(f"service {svc.name!r}: build context {root} is not a directory")
    tag = svc.image_name(project.name)
    emit(f" Service {svc.name}  Building")
    labels = {str(k): str(v) for k, v in (b.get("labels") or {}).items()}
    args = {str(k): str(v) for k, v in (b.get("args") or {}).items() if v is not None}
    tags = [tag, *(str(t) for t in b.get("tags") or [])]  # build.tags: more names for the same image
    resp = client.images.build(context_tar(root, b.get("dockerfile") or "Dockerfile"), tags=tags,
                                    dockerfile=b.get("dockerfile"), build_args=args or None,
                                    target=b.get("target"), nocache=nocache, labels=labels or None)
    for msg in iter_json(resp):
        if isinstance(msg, dict) and (msg.get("error") or msg.get("errorDetail")):
            raise ComposeError(f"service {svc.name!r} failed to build: "
                               f"{msg.get('error') or msg['errorDetail'].get('message')}")
    emit(f" Service {svc.name}  Built")

def image_id(client: APIClient, project: Project, svc: Service, emit: Emit, rebuild: bool = False) -> str:
    """The ID of the image a service runs: built (if it has `build` and is missing or `build` is asked) or pulled."""
    ref = svc.image_name(project.name)
    if svc.build and rebuild:
        build(client, project, svc, emit)
    try:
        return str(client.images.inspect(ref)["Id"])
    except ClientError as exc:
        if exc.status != 404:
            raise
    if svc.build:
        build(client, project, svc, emit)
    else:
        pull_image(client, svc, ref, emit)
    return str(client.images.inspect(ref)["Id"])

def pull_image(client: APIClient, svc: Service, ref: str, emit: Emit) -> None:
    from berth.client.distribution import pull
    from berth.client.stream import iter_json

    emit(f" Service {svc.name}  Pulling")
    try:
        for msg in iter_json(pull(client, ref)):
            if isinstance(msg, dict) and msg.get("error"):
                raise ComposeError(f"service {svc.name!r}: pull {ref}: {msg['error']}")
    except ClientError as exc:
        raise ComposeError(f"service {svc.name!r}: image {ref} not found and could not be pulled: "
                           f"{exc.message}") from exc


def push_images(client: APIClient, project: Project, services: list[str], emit: Emit,
                auth: Callable[[str], str | None] = lambda domain: None, ignore_failures: bool = False) -> list[str]:
    """`compose push`: as docker compose, the services that are built and name their image
    (`image` and `build.tags`); `auth(domain)` gives the X-Registry-Auth header. Returns the
    failures skipped under `ignore_failures`."""
    from berth.client.distribution import push
    from berth.client.stream import iter_json
    from berth.common import reference

    failures: list[str] = []
    for svc in [project.service(n) for n in services] or list(project.services.values()):
        if not (svc.build and svc.image):
            continue
        for tag in [svc.image, *((svc.build or {}).get("tags") or [])]:
            try:
                ref = reference.parse(str(tag)).with_default_tag()
                if ref.digest:
                    raise ComposeError(f"service {svc.name!r}: cannot push a digest reference {tag}")
                emit(f" Service {svc.name}  Pushing {ref}")
                for msg in iter_json(push(client, ref.name, ref.tag, auth(ref.domain))):
                    if isinstance(msg, dict) and msg.get("error"):
                        raise ComposeError(f"service {svc.name!r}: push {ref}: {msg['error']}")
                emit(f" Service {svc.name}  Pushed {ref}")
            except (ComposeError, ClientError, reference.InvalidReference) as exc:
                message = exc.message if isinstance(exc, ClientError) else str(exc)
                if not ignore_failures:
                    raise ComposeError(message if isinstance(exc, ComposeError) else
                                       f"service {svc.name!r}: push {tag}: {message}") from exc
                failures.append(message if isinstance(exc, ComposeError) else f"service {svc.name!r}: push {tag}: {message}")
    return failures


def _kv(value: Any) -> dict[str, Any]:
    if isinstance(value, list):
        return dict(str(v).partition("=")[::2] for v in value)
    return dict(value or {})


def _camel(key: str) -> str:
    return {"subnet": "Subnet", "gateway": "Gateway", "ip_range": "IPRange",
            "aux_addresses": "AuxiliaryAddresses"}.get(key, key)
