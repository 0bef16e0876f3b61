"""Tables for `ps`, `images` and `ls`, tab-aligned like docker compose's."""

from __future__ import annotations

import time
from typing import Any


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["   ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]
    return "\n".join(lines) + "\n"


def _ago(ts: int) -> str:
    d = max(0, int(time.time()) - int(ts))
    for unit, secs in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if d >= secs:
            return f"{d // secs} {unit} ago"
    return f"{d} seconds ago"


def _ports(c: dict[str, Any]) -> str:
    out = []
    for p in c.get("Ports") or []:
        if p.get("PublicPort"):
            out.append(f"{p.get('IP') or '0.0.0.0'}:{p['PublicPort']}->{p['PrivatePort']}/{p.get('Type', 'tcp')}")
        else:
            out.append(f"{p['PrivatePort']}/{p.get('Type', 'tcp')}")
    return ", ".join(dict.fromkeys(out))


def ps_table(rows: list[dict[str, Any]]) -> str:
    body = []
    for c in rows:
        cmd = c.get("Command") or ""
        body.append([(c.get("Names") or ["/"])[0].lstrip("/"), c.get("Image", ""),
                     f'"{cmd[:20]}…"' if len(cmd) > 20 else f'"{cmd}"',
                     c["Labels"].get("com.docker.compose.service", ""), _ago(c.get("Created", 0)),
                     c.get("Status", ""), _ports(c)])
    return table(["NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS"], body)


def images_table(client: Any, rows: list[dict[str, Any]]) -> str:
    body = []
    for c in rows:
        image = c.get("Image", "")
        repo, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "latest")
        try:
            info = client.images.inspect(c.get("ImageID") or image)
            iid, size = info["Id"].split(":")[-1][:12], f"{info.get('Size', 0) / 1e6:.1f}MB"
        except Exception:
            iid, size = "", ""
        body.append([(c.get("Names") or ["/"])[0].lstrip("/"), repo, tag, iid, size])
    return table(["CONTAINER", "REPOSITORY", "TAG", "IMAGE ID", "SIZE"], body)


def projects_table(rows: list[dict[str, Any]], quiet: bool) -> str:
    projects: dict[str, dict[str, Any]] = {}
    for c in rows:
        name = c["Labels"].get("com.docker.compose.project", "")
        p = projects.setdefault(name, {"states": {}, "files": c["Labels"].get("com.docker.compose.project.config_files", "")})
        p["states"][c.get("State", "")] = p["states"].get(c.get("State", ""), 0) + 1
    if quiet:
        return "".join(f"{n}\n" for n in sorted(projects))
    body = [[n, ", ".join(f"{s}({k})" for s, k in sorted(p["states"].items())), p["files"]]
            for n, p in sorted(projects.items())]
    return table(["NAME", "STATUS", "CONFIG FILES"], body)
