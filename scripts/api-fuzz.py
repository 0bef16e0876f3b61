#!/usr/bin/env python3
"""Fuzz a running berthd with schemathesis, from the Engine API's own swagger: no request the schema
allows may get a 5xx (a traceback would show up as one). Read-mostly and safe for the host.

    scripts/api-fuzz.py --url http://127.0.0.1:23750 [--spec ../shared/specs/docker-engine-api/v1.41.yaml]
                        [--examples 8]

Give it a throwaway berthd listening on TCP (`berthd -H tcp://127.0.0.1:23750 --data-root ...`),
with `busybox` loaded: it creates a container `fuzz-c`, a network `fuzz-n`, a volume `fuzz-v` and an
exec to aim the path parameters at, and leaves them behind. Operations that stream, block, reach a
registry, create networks (a fuzzed subnet could shadow the host's routes) or change state beyond a
container's create are left out. Needs schemathesis (`pip install schemathesis`, not a berth
dependency); runs derandomized, so a failure reproduces.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request

EXCLUDE = ("attach", "/events", "/build", "/session", "/swarm", "/services", "/tasks", "/secrets", "/configs",
           "/nodes", "/plugins", "/wait", "/start", "/push", "/auth", "/stats", "/distribution",
           "/images/create", "/images/search", "/logs", "/export", "/get", "/archive", "/prune", "/kill",
           "/stop", "/restart", "/pause", "/load", "/commit", "/update", "/networks/create", "/connect",
           "/disconnect", "/volumes/create")


def call(url: str, method: str, path: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(url + path, method=method, data=json.dumps(body).encode() if body else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as resp:
        raw = resp.read()
    return json.loads(raw) if raw.strip() else {}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--spec", default="../shared/specs/docker-engine-api/v1.41.yaml")
    ap.add_argument("--examples", type=int, default=8)
    ap.add_argument("--negative", action="store_true", help="also requests the schema does not allow")
    args = ap.parse_args()
    import hypothesis
    import schemathesis
    from schemathesis import GenerationMode

    base = args.url.rstrip("/") + "/v1.41"
    call(base, "POST", "/containers/create?name=fuzz-c", {"Image": "busybox", "Cmd": ["sleep", "1000"]})
    call(base, "POST", "/containers/fuzz-c/start")
    call(base, "POST", "/networks/create", {"Name": "fuzz-n"})
    call(base, "POST", "/volumes/create", {"Name": "fuzz-v"})
    exec_id = call(base, "POST", "/containers/fuzz-c/exec", {"Cmd": ["true"]})["Id"]

    schema = schemathesis.openapi.from_path(args.spec)
    schema.config.update(base_url=base)
    schema = schema.exclude(path_regex="|".join(e.replace("/", "\\/") for e in EXCLUDE)).exclude(method="DELETE")
    failures: list[str] = []
    calls: list[int] = []

    def check(case: schemathesis.Case) -> None:
        params = case.path_parameters or {}
        if "id" in params:
            params["id"] = exec_id if case.path.startswith("/exec") else \
                "fuzz-n" if case.path.startswith("/networks") else "fuzz-c"
        if "name" in params:
            params["name"] = "fuzz-v" if case.path.startswith("/volumes") else \
                "busybox" if case.path.startswith("/images") else "fuzz-c"
        case.path_parameters = params
        resp = case.call(timeout=10)
        calls.append(resp.status_code)
        if resp.status_code >= 500:
            failures.append(f"{case.method} {case.formatted_path} {case.query} -> {resp.status_code} "
                            f"{resp.content[:200]!r}")

    modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if args.negative else [])
    for result in schema.get_all_operations():
        operation = result.ok()
        strategy = hypothesis.strategies.one_of(*[operation.as_strategy(generation_mode=m) for m in modes])
        run = hypothesis.settings(max_examples=args.examples, deadline=None, derandomize=True, database=None,
                                  suppress_health_check=list(hypothesis.HealthCheck))(
            hypothesis.given(strategy)(check))
        try:
            run()
        except Exception as e:  # noqa: BLE001 - one operation's schema cannot be generated; go on
            print(f"{operation.method.upper()} {operation.path}: not generated ({type(e).__name__}: {e})"[:160])
        else:
            print(f"{operation.method.upper()} {operation.path}: ok")
    for f in failures:
        print("5xx:", f)
    print(f"{len(calls)} requests, {len(failures)} server errors; statuses: {sorted(set(calls))}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
