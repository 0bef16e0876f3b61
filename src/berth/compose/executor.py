"""Turns a project into networks, volumes and containers through berth's Engine API client.

The daemon's `com.docker.compose.*` labels are the only state: every decision (create, recreate,
start, leave alone, remove) is made from what `GET /containers/json` reports for the project.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from berth.client.api import APIClient
from berth.client.errors import ClientError
from berth.compose import convert, resources
from berth.compose.errors import ComposeError
from berth.compose.graph import run_in_order, with_dependencies
from berth.compose.listing import number, project_containers
from berth.compose.model import Project, Service

Emit = Callable[[str], None]


@dataclass
class UpOptions:
    services: list[str] = field(default_factory=list)
    build: bool = False
    force_recreate: bool = False
    no_recreate: bool = False
    no_deps: bool = False
    scale: dict[str, int] = field(default_factory=dict)
    remove_orphans: bool = False
    start: bool = True
    # How long a dependent waits for service_healthy / service_completed_successfully.
    dependency_timeout: float = 300


def _reuse_volumes(mounts: list[dict[str, Any]], kept: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The service's mounts with its unnamed volumes bound to the kept ones at the same target,
    and the kept ones no mount asks for (an image's VOLUME) added; a target the service now
    fills otherwise (a named volume, a bind) leaves its kept volume out."""
    by_target = {v["Target"]: v for v in kept}
    out = []
    for m in mounts:
        old = by_target.pop(m.get("Target"), None)
        if old is not None and m.get("Type") == "volume" and not m.get("Source"):
            m = {**m, "Source": old["Source"]}
        out.append(m)
    return out + list(by_target.values())


def _name(c: dict[str, Any]) -> str:
    return (c.get("Names") or ["/?"])[0].lstrip("/")


class Compose:
    """One project on one engine. Methods map to `berth compose` commands."""

    def __init__(self, client: APIClient, project: Project, emit: Emit = print) -> None:
        self.client = client
        self.project = project
        self._lock = threading.Lock()
        self._emit = emit

    def emit(self, line: str) -> None:
        with self._lock:
            self._emit(line)

    # --- what the engine has ---------------------------------------------------------------------

    def containers(self, services: Iterable[str] = (), all: bool = True, oneoff: bool = False) -> list[dict[str, Any]]:
        return project_containers(self.client, self.project.name, services, all, oneoff)

    def orphans(self) -> list[dict[str, Any]]:
        known = set(self.project.services) | set(self.project.disabled)
        return [c for c in self.containers() if c["Labels"].get(convert.LABEL_SERVICE) not in known]

    # --- networks, volumes, images (see `resources`) ----------------------------------------------

    def ensure_networks(self) -> None:
        resources.ensure_networks(self.client, self.project, self.emit)

    def ensure_volumes(self) -> None:
        resources.ensure_volumes(self.client, self.project, self.emit)

    def build(self, services: Iterable[str] = (), nocache: bool = False) -> None:
        names = list(services) or [n for n, s in self.project.services.items() if s.build]
        for name in names:
            svc = self.project.service(name)
            if svc.build:
                resources.build(self.client, self.project, svc, self.emit, nocache)

    def image_id(self, svc: Service, build: bool = False) -> str:
        return resources.image_id(self.client, self.project, svc, self.emit, rebuild=build)

    # --- up ----------------------------------------------------------------------------------------

    def up(self, opts: UpOptions) -> dict[str, bool]:
        """Converge; returns service -> whether any of its existing containers was replaced (which
        makes its dependents stale too). Scaling and first creation do not count."""
        services = self.project.services
        for name in opts.services:
            self.project.service(name)
        selected = set(opts.services) if opts.no_deps else with_dependencies(services, opts.services) \
            if opts.services else set(services)
        # as docker compose: every image is there (pulled or built) before anything is created,
        # so a build that fails leaves no network or volume behind
        images = {name: self.image_id(svc, opts.build) for name, svc in services.items() if name in selected}
        self.ensure_networks()
        self.ensure_volumes()
        if opts.remove_orphans:
            for c in self.orphans():
                self._remove(c, stop=True)
        elif self.orphans():
            names = ", ".join(sorted(_name(c) for c in self.orphans()))
            self.emit(f" Found orphan containers ({names}) for this project; run with --remove-orphans "
                      "to clean them up")
        scoped = {n: s for n, s in services.items() if n in selected}

        def converge(name: str, deps: dict[str, bool]) -> bool:
            svc = services[name]
            return self._converge(svc, images[name], opts, any(deps.values()))

        return run_in_order(scoped, converge)

    def _converge(self, svc: Service, image_id: str, opts: UpOptions, deps_changed: bool) -> bool:
        hash_ = convert.config_hash(svc, image_id)
        want = opts.scale.get(svc.name, svc.scale)
        existing = self.containers([svc.name])
        changed = False
        for c in existing:
            if number(c) > want:
                self._remove(c, stop=True)
        by_number = {number(c): c for c in existing if number(c) <= want}
        self._wait_dependencies(svc, opts.dependency_timeout)
        for n in range(1, want + 1):
            found = by_number.get(n)
            if found is not None:
                c = found
                stale = c["Labels"].get(convert.LABEL_HASH) != hash_ or deps_changed
                if (opts.force_recreate or stale) and not opts.no_recreate:
                    kept = self._anonymous_volumes(c)
                    self._remove(c, stop=True, quiet=True)
                    self.emit(f" Container {_name(c)}  Recreate")
                    cid = self._create(svc, n, hash_, volumes=kept)
                    changed = True
                    if opts.start:
                        self._start(cid, _name(c))
                    continue
                if opts.start and c.get("State") != "running":
                    self._start(c["Id"], _name(c))
                else:
                    self.emit(f" Container {_name(c)}  Running")
            else:
                cid = self._create(svc, n, hash_)
                if opts.start:
                    self._start(cid, convert.container_name(self.project, svc, n))
        return changed

    def _network_mode(self, svc: Service) -> str | None:
        mode = svc.config.get("network_mode")
        if not mode:
            return None
        mode = str(mode)
        if mode.startswith("service:"):
            target = self.containers([mode[8:]], all=False)
            if not target:
                raise ComposeError(f"service {svc.name!r}: network_mode {mode}: no running container")
            return f"container:{target[0]['Id']}"
        return mode

    def _anonymous_volumes(self, c: dict[str, Any]) -> list[dict[str, Any]]:
        """The anonymous volumes of a container about to be replaced: as docker compose, its
        successor mounts them again, so their data outlives the recreate."""
        mounts = self.client.containers.inspect(c["Id"]).get("Mounts") or []
        return [{"Type": "volume", "Source": m["Name"], "Target": m["Destination"], "ReadOnly": not m.get("RW", True)}
                for m in mounts if m.get("Type") == "volume" and m.get("Name")
                and len(m["Name"]) == 64 and all(ch in "0123456789abcdef" for ch in m["Name"])]

    def _create(self, svc: Service, number: int, hash_: str, oneoff: bool = False,
                name: str | None = None, overrides: dict[str, Any] | None = None,
                volumes: list[dict[str, Any]] | None = None) -> str:
        name = name or convert.container_name(self.project, svc, number)
        mode = self._network_mode(svc)
        nets = [] if mode else list(svc.networks)
        body = convert.create_body(self.project, svc, number, hash_,
                                   mode or (self.project.networks[nets[0]].name if nets else None), oneoff)
        body.update(overrides or {})
        if volumes:
            host = body.setdefault("HostConfig", {})
            host["Mounts"] = _reuse_volumes(host.get("Mounts") or [], volumes)
        # API 1.44 takes every network at create (one request, wired at start); older ones one at a time.
        at_create = nets if self._multi_network_create() else nets[:1]
        if nets:
            body["NetworkingConfig"] = {"EndpointsConfig": {
                self.project.networks[key].name: convert.endpoint_config(svc, key, name) for key in at_create}}
        cid = str(self.client.containers.create(body, name=name)["Id"])
        for key in nets[len(at_create):]:
            self.client.networks.connect(self.project.networks[key].name, cid,
                                         convert.endpoint_config(svc, key, name))
        self.emit(f" Container {name}  Created")
        return cid

    def _multi_network_create(self) -> bool:
        major, minor = (int(x) for x in self.client.api_version.split(".")[:2])
        return (major, minor) >= (1, 44)

    def _start(self, cid: str, name: str) -> None:
        self.client.containers.start(cid)
        self.emit(f" Container {name}  Started")

    def _remove(self, c: dict[str, Any], stop: bool = False, volumes: bool = False, quiet: bool = False) -> None:
        if stop and c.get("State") in ("running", "paused", "restarting"):
            self.client.containers.stop(c["Id"], t=self._timeout(c))
            if not quiet:
                self.emit(f" Container {_name(c)}  Stopped")
        self.client.containers.remove(c["Id"], force=True, v=volumes)
        if not quiet:
            self.emit(f" Container {_name(c)}  Removed")

    def _timeout(self, c: dict[str, Any]) -> int | None:
        svc = self.project.services.get(c["Labels"].get(convert.LABEL_SERVICE, ""))
        if svc and svc.config.get("stop_grace_period") is not None:
            return int(convert.parse_duration(svc.config["stop_grace_period"]))
        return None

    def _wait_dependencies(self, svc: Service, timeout: float = 300) -> None:
        for dep in svc.depends_on:
            if dep.service not in self.project.services:
                continue
            if dep.condition == "service_completed_successfully":
                for c in self.containers([dep.service]):
                    result = self.client.containers.wait(c["Id"], condition="not-running")
                    code = int(result.get("StatusCode", 0))
                    if code != 0:
                        raise ComposeError(f"service {dep.service!r} didn't complete successfully: exit {code} "
                                           f"(required by {svc.name!r})")
            elif dep.condition == "service_healthy":
                self._wait_healthy(dep.service, svc.name, time.monotonic() + timeout)

    def wait_ready(self, services: Iterable[str] = (), timeout: float = 300) -> None:
        """`up --wait`: every container running (and healthy, if the engine reports health); a
        one-shot that others wait for with service_completed_successfully may have exited 0."""
        completed = {d.service for s in self.project.services.values() for d in s.depends_on
                     if d.condition == "service_completed_successfully"}
        deadline = time.monotonic() + timeout
        for c in self.containers(services):
            service = c["Labels"].get(convert.LABEL_SERVICE, "")
            while True:
                state = self.client.containers.inspect(c["Id"]).get("State") or {}
                health = (state.get("Health") or {}).get("Status")
                if state.get("Running") and health in (None, "healthy"):
                    break
                if not state.get("Running") and state.get("Status") == "exited":
                    if service in completed and state.get("ExitCode") == 0:
                        break
                    raise ComposeError(f"container {_name(c)} exited ({state.get('ExitCode')})")
                if health == "unhealthy":
                    raise ComposeError(f"container {_name(c)} is unhealthy")
                if time.monotonic() > deadline:
                    raise ComposeError(f"timed out waiting for {_name(c)} to be ready")
                time.sleep(0.3)
            self.emit(f" Container {_name(c)}  {'Healthy' if health else 'Running'}")

    def _wait_healthy(self, dep: str, by: str, deadline: float) -> None:
        """As docker compose does for `service_healthy`: every container of `dep` must report
        State.Health "healthy"; "unhealthy", an exit, no health check at all, or the deadline fail."""
        for c in self.containers([dep]):
            self.emit(f" Container {_name(c)}  Waiting")
            while True:
                state = self.client.containers.inspect(c["Id"]).get("State") or {}
                health = state.get("Health")
                if state.get("Status") == "exited":
                    raise ComposeError(f"dependency failed to start: container {_name(c)} exited "
                                       f"({state.get('ExitCode')}) (required by {by!r})")
                if not health:
                    raise ComposeError(f"dependency failed to start: container {_name(c)} has no healthcheck "
                                       f"configured (required by {by!r} with service_healthy)")
                status = health.get("Status")
                if status == "healthy":
                    self.emit(f" Container {_name(c)}  Healthy")
                    break
                if status == "unhealthy":
                    raise ComposeError(f"dependency failed to start: container {_name(c)} is unhealthy")
                if time.monotonic() > deadline:
                    raise ComposeError(f"timed out waiting for {_name(c)} to become healthy "
                                       f"(required by {by!r})")
                time.sleep(0.1)

    # --- down and lifecycle ------------------------------------------------------------------------

    def down(self, volumes: bool = False, rmi: str | None = None, remove_orphans: bool = False) -> None:
        known = set(self.project.services) | set(self.project.disabled)
        targets = [c for c in self.containers() + self.containers(oneoff=True)
                   if remove_orphans or c["Labels"].get(convert.LABEL_SERVICE) in known]
        by_service: dict[str, list[dict[str, Any]]] = {}
        for c in targets:
            by_service.setdefault(c["Labels"].get(convert.LABEL_SERVICE, ""), []).append(c)
        # Dependents stop before what they depend on; -v takes their anonymous volumes too, as docker compose.
        self._for_each_reverse(by_service, lambda c: self._remove(c, stop=True, volumes=volumes))
        for net in self.project.networks.values():
            if not net.external:
                self._remove_resource("Network", net.name, self.client.networks.remove)
        if volumes:
            for vol in self.project.volumes.values():
                if not vol.external:
                    self._remove_resource("Volume", vol.name, self.client.volumes.remove)
        if rmi:
            for svc in self.project.services.values():
                if rmi == "local" and svc.image:
                    continue
                try:
                    self.client.images.remove(svc.image_name(self.project.name))
                    self.emit(f" Image {svc.image_name(self.project.name)}  Removed")
                except ClientError as exc:
                    if exc.status not in (404, 409):
                        raise

    def _remove_resource(self, kind: str, name: str, remove: Callable[[str], object]) -> None:
        """Remove a project network or volume; one already gone is not an error."""
        try:
            remove(name)
            self.emit(f" {kind} {name}  Removed")
        except ClientError as exc:
            if exc.status != 404:
                raise

    def _for_each_reverse(self, by_service: dict[str, list[dict[str, Any]]],
                          action: Callable[[dict[str, Any]], None]) -> None:
        known = {n: s for n, s in self.project.services.items() if n in by_service}

        def each(name: str, _: dict[str, None]) -> None:
            for c in by_service.get(name, []):
                action(c)

        run_in_order(known, each, reverse=True)
        for name, cs in by_service.items():
            if name not in known:
                for c in cs:
                    action(c)

    def _select(self, services: Iterable[str], all: bool = True) -> list[dict[str, Any]]:
        services = list(services)
        for s in services:
            self.project.service(s)
        return self.containers(services, all=all)

    def stop(self, services: Iterable[str] = (), timeout: int | None = None) -> None:
        def act(c: dict[str, Any]) -> None:
            if c.get("State") in ("running", "paused", "restarting"):
                self.client.containers.stop(c["Id"], t=timeout if timeout is not None else self._timeout(c))
                self.emit(f" Container {_name(c)}  Stopped")

        self._grouped(services, act, reverse=True)

    def start(self, services: Iterable[str] = ()) -> None:
        def act(c: dict[str, Any]) -> None:
            if c.get("State") != "running":
                self._start(c["Id"], _name(c))

        self._grouped(services, act)

    def restart(self, services: Iterable[str] = (), timeout: int | None = None) -> None:
        def act(c: dict[str, Any]) -> None:
            self.client.containers.restart(c["Id"], t=timeout)
            self.emit(f" Container {_name(c)}  Restarted")

        self._grouped(services, act)

    def _grouped(self, services: Iterable[str], act: Callable[[dict[str, Any]], None], reverse: bool = False) -> None:
        by_service: dict[str, list[dict[str, Any]]] = {}
        for c in self._select(services):
            by_service.setdefault(c["Labels"].get(convert.LABEL_SERVICE, ""), []).append(c)
        if reverse:
            self._for_each_reverse(by_service, act)
            return
        known = {n: s for n, s in self.project.services.items() if n in by_service}
        def each(name: str, _: dict[str, None]) -> None:
            for c in by_service[name]:
                act(c)

        run_in_order(known, each)

    def kill(self, services: Iterable[str] = (), signal: str | None = None) -> None:
        for c in self._select(services, all=False):
            self.client.containers.kill(c["Id"], signal=signal)
            self.emit(f" Container {_name(c)}  Killed")

    def pause(self, services: Iterable[str] = ()) -> None:
        for c in self._select(services, all=False):
            self.client.containers.pause(c["Id"])
            self.emit(f" Container {_name(c)}  Paused")

    def unpause(self, services: Iterable[str] = ()) -> None:
        for c in self._select(services):
            if c.get("State") == "paused":
                self.client.containers.unpause(c["Id"])
                self.emit(f" Container {_name(c)}  Unpaused")

    def rm(self, services: Iterable[str] = (), stop: bool = False, volumes: bool = False) -> None:
        for c in self._select(services):
            if c.get("State") in ("running", "paused", "restarting") and not stop:
                continue
            self._remove(c, stop=stop, volumes=volumes)

    def run(self, service: str, command: list[str] | None, env: dict[str, str], remove: bool = True,
            no_deps: bool = False, detach: bool = False) -> tuple[str, int | None]:
        """A one-off container of a service; returns its name and (unless detached) its exit code."""
        svc = self.project.service(service)
        if not no_deps:
            deps = [d for d in with_dependencies(self.project.services, [service]) if d != service]
            if deps:
                self.up(UpOptions(services=deps))
        else:
            self.ensure_networks()
            self.ensure_volumes()
        image_id = self.image_id(svc)
        hash_ = convert.config_hash(svc, image_id)
        taken = {number(c) for c in self.containers([service], oneoff=True)}
        number = next(i for i in range(1, len(taken) + 2) if i not in taken)
        name = f"{self.project.name}-{service}-run-{number}"
        overrides: dict[str, Any] = {}
        if command:
            overrides["Cmd"] = command
        body_env = {**{k: v for k, v in (svc.config.get("environment") or {}).items() if v is not None}, **env}
        overrides["Env"] = [f"{k}={v}" for k, v in body_env.items()]
        svc_run = Service(svc.name, {**svc.config, "ports": [], "restart": "no"})
        cid = self._create(svc_run, number, hash_, oneoff=True, name=name, overrides=overrides)
        if detach:
            self.client.containers.start(cid)
            return name, None
        conn = self.client.containers.wait_send(cid, condition="next-exit")
        self.client.containers.start(cid)
        result = self.client.containers.wait_receive(conn)
        if remove:
            self.client.containers.remove(cid, force=True)
        return name, int(result.get("StatusCode", 0))

