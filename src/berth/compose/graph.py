"""Dependency order over `depends_on` (and `network_mode: service:x`), and a threaded walk of it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from berth.compose.errors import ComposeError
from berth.compose.model import Service

T = TypeVar("T")


def dependencies(svc: Service, known: Iterable[str]) -> list[str]:
    names = set(known)
    deps = [d.service for d in svc.depends_on if d.service in names]
    mode = str(svc.config.get("network_mode", ""))
    if mode.startswith("service:") and mode[8:] in names and mode[8:] not in deps:
        deps.append(mode[8:])
    return deps


def order(services: dict[str, Service]) -> list[str]:
    """Dependencies first, ties by name; a cycle is an error that names it."""
    out: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = (*path[path.index(name):], name)
            raise ComposeError(f"dependency cycle: {' -> '.join(cycle)}")
        state[name] = 1
        for dep in sorted(dependencies(services[name], services)):
            visit(dep, (*path, name))
        state[name] = 2
        out.append(name)

    for name in sorted(services):
        visit(name, ())
    return out


def with_dependencies(services: dict[str, Service], wanted: Iterable[str]) -> set[str]:
    out: set[str] = set()
    todo = list(wanted)
    while todo:
        name = todo.pop()
        if name not in out:
            out.add(name)
            todo.extend(dependencies(services[name], services))
    return out


def dependents(services: dict[str, Service], name: str) -> set[str]:
    return {s for s, svc in services.items() if name in dependencies(svc, services)}


def run_in_order(services: dict[str, Service], fn: Callable[[str, dict[str, T]], T],
                 reverse: bool = False) -> dict[str, T]:
    """Call fn(name, results of its predecessors) for each service, in parallel where the graph allows.

    Forward: a service runs after its dependencies; reverse (stop, down): after its dependents.
    The first exception is raised once all started work has finished.
    """
    names = order(services)
    preds = {n: (sorted(dependents(services, n)) if reverse else dependencies(services[n], services))
             for n in names}
    futures: dict[str, Future[T]] = {}
    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        def task(name: str) -> T:
            done = {p: futures[p].result() for p in preds[name]}
            return fn(name, done)

        for name in (reversed(names) if reverse else names):
            futures[name] = pool.submit(task, name)
        return {n: f.result() for n, f in futures.items()}
