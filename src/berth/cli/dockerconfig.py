"""Registry credentials in ~/.docker/config.json (or $DOCKER_CONFIG), as the docker CLI keeps them.

`auths` holds base64 `user:password` per registry; `credsStore` / `credHelpers` name a
`docker-credential-<helper>` program that stores them instead (its get/store/erase protocol).
Docker Hub's key is `https://index.docker.io/v1/`.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from typing import Any

HUB_KEY = "https://index.docker.io/v1/"


def config_path() -> str:
    base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(base, "config.json")


def _load() -> dict[str, Any]:
    try:
        with open(config_path(), encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    return data if isinstance(data, dict) else {}


def _save(data: dict[str, Any]) -> None:
    path = config_path()
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as f:
        json.dump(data, f, indent="\t")
        f.write("\n")
    os.replace(tmp, path)


def server_key(registry: str) -> str:
    """The config key of a registry named in a reference (`docker.io` -> Hub's URL)."""
    reg = registry
    for prefix in ("https://", "http://"):
        reg = reg.removeprefix(prefix)
    reg = reg.split("/", 1)[0]
    return HUB_KEY if reg in ("", "docker.io", "index.docker.io", "registry-1.docker.io") else reg


def _helper(data: dict[str, Any], key: str) -> str | None:
    helpers = data.get("credHelpers") or {}
    return helpers.get(key) or data.get("credsStore") or None


def _run_helper(helper: str, action: str, payload: str) -> str:
    p = subprocess.run([f"docker-credential-{helper}", action], input=payload.encode(), capture_output=True,
                       timeout=60)
    if p.returncode != 0:
        raise OSError(f"error {action} credentials with docker-credential-{helper}: "
                      f"{(p.stdout or p.stderr).decode(errors='replace').strip()}")
    return p.stdout.decode()


def get(registry: str) -> tuple[str, str] | None:
    data = _load()
    key = server_key(registry)
    helper = _helper(data, key)
    if helper:
        try:
            out = json.loads(_run_helper(helper, "get", key))
        except (OSError, ValueError):
            return None
        return str(out.get("Username", "")), str(out.get("Secret", ""))
    entry = (data.get("auths") or {}).get(key)
    if not entry or not entry.get("auth"):
        return None
    user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
    return user, password


def store(registry: str, username: str, password: str) -> None:
    data = _load()
    key = server_key(registry)
    helper = _helper(data, key)
    if helper:
        _run_helper(helper, "store", json.dumps({"ServerURL": key, "Username": username, "Secret": password}))
        data.setdefault("auths", {})[key] = {}
    else:
        raw = base64.b64encode(f"{username}:{password}".encode()).decode()
        data.setdefault("auths", {})[key] = {"auth": raw}
    _save(data)


def erase(registry: str) -> bool:
    """Forget the registry's credentials; False if there were none."""
    data = _load()
    key = server_key(registry)
    helper = _helper(data, key)
    found = key in (data.get("auths") or {})
    if helper:
        try:
            _run_helper(helper, "erase", key)
            found = True
        except OSError:
            pass
    if found:
        (data.get("auths") or {}).pop(key, None)
        _save(data)
    return found


def registry_auth_header(registry: str) -> str | None:
    """The X-Registry-Auth value for a registry: base64url JSON of the saved credentials."""
    creds = get(registry)
    if creds is None:
        return None
    body = {"username": creds[0], "password": creds[1], "serveraddress": server_key(registry)}
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode()
