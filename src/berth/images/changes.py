"""`--change` instructions for import and commit: a few Dockerfile instructions applied to a config."""

from __future__ import annotations

import json
import shlex
from typing import Any

from berth.common.errors import InvalidParameter

ALLOWED = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL", "USER", "VOLUME",
           "WORKDIR")


def _exec_or_shell(arg: str) -> list[str]:
    arg = arg.strip()
    if arg.startswith("["):
        try:
            val = json.loads(arg)
        except ValueError:
            val = None
        if isinstance(val, list) and all(isinstance(x, str) for x in val):
            return val
    return ["/bin/sh", "-c", arg]


def _pairs(arg: str, instruction: str) -> list[tuple[str, str]]:
    words = shlex.split(arg)
    if not words:
        raise InvalidParameter(f"{instruction} requires at least one argument")
    if "=" not in words[0]:
        # legacy form: KEY value with spaces
        key, _, value = arg.strip().partition(" ")
        return [(key, value.strip())]
    out = []
    for w in words:
        if "=" not in w:
            raise InvalidParameter(f"{instruction} names can not be blank: {w}")
        k, v = w.split("=", 1)
        out.append((k, v))
    return out


def apply_changes(config: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    cfg = dict(config)
    for change in changes:
        for line in change.splitlines():
            line = line.strip()
            if not line:
                continue
            instr, _, arg = line.partition(" ")
            instr = instr.upper()
            if instr not in ALLOWED:
                raise InvalidParameter(f"{instr} is not a valid change command")
            if instr == "CMD":
                cfg["Cmd"] = _exec_or_shell(arg)
            elif instr == "ENTRYPOINT":
                cfg["Entrypoint"] = _exec_or_shell(arg)
            elif instr == "ENV":
                env = {e.split("=", 1)[0]: e for e in cfg.get("Env") or []}
                for k, v in _pairs(arg, "ENV"):
                    env[k] = f"{k}={v}"
                cfg["Env"] = list(env.values())
            elif instr == "LABEL":
                labels = dict(cfg.get("Labels") or {})
                labels.update(_pairs(arg, "LABEL"))
                cfg["Labels"] = labels
            elif instr == "EXPOSE":
                ports = dict(cfg.get("ExposedPorts") or {})
                for p in arg.split():
                    ports[p if "/" in p else f"{p}/tcp"] = {}
                cfg["ExposedPorts"] = ports
            elif instr == "VOLUME":
                vols = dict(cfg.get("Volumes") or {})
                paths = json.loads(arg) if arg.strip().startswith("[") else arg.split()
                for p in paths:
                    vols[p] = {}
                cfg["Volumes"] = vols
            elif instr == "USER":
                cfg["User"] = arg.strip()
            elif instr == "WORKDIR":
                cfg["WorkingDir"] = arg.strip()
            elif instr == "STOPSIGNAL":
                cfg["StopSignal"] = arg.strip()
            elif instr == "ONBUILD":
                cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), arg.strip()]
    return cfg
