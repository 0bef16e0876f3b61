"""Rows for `ps` and `images`: the fields docker's formatters expose, computed from API objects.

Pure: every function takes the API dict plus `now` and returns strings exactly as docker prints them.
"""

from __future__ import annotations

from typing import Any

from berth.cli.format.humanize import go_time_string, human_duration, human_size
from berth.cli.format.template import Row

PS_HEADERS = {
    "ID": "CONTAINER ID",
    "Image": "IMAGE",
    "Command": "COMMAND",
    "CreatedAt": "CREATED AT",
    "RunningFor": "CREATED",
    "Ports": "PORTS",
    "State": "STATE",
    "Status": "STATUS",
    "Size": "SIZE",
    "Names": "NAMES",
    "Labels": "LABELS",
    "Mounts": "MOUNTS",
    "LocalVolumes": "LOCAL VOLUMES",
    "Networks": "NETWORKS",
    "Platform": "PLATFORM",
}
PS_TABLE = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"

IMAGE_HEADERS = {
    "ID": "IMAGE ID",
    "Repository": "REPOSITORY",
    "Tag": "TAG",
    "Digest": "DIGEST",
    "CreatedSince": "CREATED",
    "CreatedAt": "CREATED AT",
    "Size": "SIZE",
    "Containers": "CONTAINERS",
    "SharedSize": "SHARED SIZE",
    "UniqueSize": "UNIQUE SIZE",
    "VirtualSize": "VIRTUAL SIZE",
}
IMAGES_TABLE = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
IMAGES_DIGESTS_TABLE = "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"


def short_id(id_: str) -> str:
    """The 12-hex-digit form docker shows, without the `sha256:` algorithm prefix."""
    return id_.split(":", 1)[-1][:12]


def ellipsis(text: str, width: int) -> str:
    """Cut to `width` characters, the last one being `…`, as docker's formatter.Ellipsis."""
    if len(text) <= width:
        return text
    if width <= 1:
        return text[:width]
    return text[: width - 1] + "…"


def go_quote(text: str) -> str:
    """strconv.Quote: double quotes, backslash escapes for quotes and control characters."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append("\\" + "abfnrtv"["\a\b\f\n\r\t\v".index(ch)])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def familiar_image(image: str, image_id: str, trunc: bool) -> str:
    if not image:
        return "<no image>"
    if not trunc:
        return image
    if short_id(image) == short_id(image_id):
        return short_id(image)
    # Truncated view hides the digest of `name@sha256:...` references.
    name = image.split("@", 1)[0]
    for prefix in ("docker.io/library/", "docker.io/"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    return name


def format_ports(ports: list[dict[str, Any]] | None) -> str:
    """`127.0.0.1:5353->53/udp, 0.0.0.0:8080->80/tcp, 443/tcp`, one entry per binding.

    docker 28 no longer folds consecutive ports into ranges; it orders by host port (unpublished
    ports first), then container port.
    """
    entries: list[tuple[int, int, str, str, str]] = []
    for p in ports or []:
        private, proto = int(p.get("PrivatePort", 0)), p.get("Type", "tcp")
        public = p.get("PublicPort")
        if public:
            ip = p.get("IP", "")
            host = f"[{ip}]" if ":" in ip else ip
            text = f"{host}:{public}->{private}/{proto}"
        else:
            ip, text = "", f"{private}/{proto}"
        entries.append((int(public or 0), private, proto, ip, text))
    return ", ".join(dict.fromkeys(e[-1] for e in sorted(entries)))


def container_row(c: dict[str, Any], now: float, trunc: bool = True) -> Row:
    names = [n.lstrip("/") for n in c.get("Names") or []]
    if trunc:
        # Link aliases look like `other/alias`; the truncated view shows only the real name.
        names = [n for n in names if "/" not in n][:1] or names[:1]
    command = c.get("Command", "")
    if trunc:
        command = ellipsis(command, 20)
    created = float(c.get("Created", 0))
    labels = c.get("Labels") or {}
    mounts = []
    for m in c.get("Mounts") or []:
        name = m.get("Name") or m.get("Source", "")
        mounts.append(ellipsis(name, 15) if trunc else name)
    networks = sorted(((c.get("NetworkSettings") or {}).get("Networks") or {}).keys())
    size = ""
    if "SizeRw" in c or "SizeRootFs" in c:
        size = human_size(c.get("SizeRw") or 0)
        if c.get("SizeRootFs"):
            size += f" (virtual {human_size(c['SizeRootFs'])})"
    cid = c.get("Id", "")
    fields = {
        "Command": go_quote(command),
        "CreatedAt": go_time_string(created),
        "ID": short_id(cid) if trunc else cid,
        "Image": familiar_image(c.get("Image", ""), c.get("ImageID", ""), trunc),
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "LocalVolumes": str(sum(1 for m in c.get("Mounts") or [] if m.get("Driver") == "local")),
        "Mounts": ",".join(mounts),
        "Names": ",".join(names),
        "Networks": ",".join(networks),
        "Platform": None,
        "Ports": format_ports(c.get("Ports")),
        "RunningFor": human_duration(now - created) + " ago",
        "Size": size,
        "State": c.get("State", ""),
        "Status": c.get("Status", ""),
    }
    return Row(fields, {"Label": lambda key: labels.get(key, "")})


def image_rows(img: dict[str, Any], now: float, trunc: bool = True, digests: bool = False) -> list[Row]:
    """One row per repository:tag (and per digest with --digests), as `docker images` lists them."""
    tags: dict[str, list[str]] = {}
    for ref in img.get("RepoTags") or []:
        repo, tag = _split_tag(ref)
        if repo and tag and ref != "<none>:<none>":
            tags.setdefault(repo, []).append(tag)
    digs: dict[str, list[str]] = {}
    for ref in img.get("RepoDigests") or []:
        repo, _, dgst = ref.partition("@")
        if dgst and ref != "<none>@<none>":
            digs.setdefault(_familiar(repo), []).append(dgst)
    pairs: list[tuple[str, str, str]] = []
    for repo, repo_tags in tags.items():
        # Digests of a tagged repository never get rows of their own.
        repo_digs = digs.pop(repo, [])
        if not digests:
            repo_digs = []
        for tag in repo_tags:
            pairs.extend((repo, tag, d) for d in repo_digs or ["<none>"])
    for repo, repo_digs in digs.items():
        pairs.extend((repo, "<none>", d) for d in (repo_digs if digests else ["<none>"]))
    if not pairs:
        pairs = [("<none>", "<none>", "<none>")]
    created = float(img.get("Created", 0))
    size = img.get("Size", 0)
    shared = img.get("SharedSize", -1)
    containers = img.get("Containers", -1)
    virtual = img.get("VirtualSize", size)
    base = {
        "Containers": "N/A" if containers == -1 else str(containers),
        "CreatedAt": go_time_string(created),
        "CreatedSince": human_duration(now - created) + " ago",
        "ID": short_id(img.get("Id", "")) if trunc else img.get("Id", ""),
        "SharedSize": "N/A" if shared == -1 else human_size(shared),
        "Size": human_size(size),
        "UniqueSize": "N/A" if shared == -1 else human_size(size - shared),
        "VirtualSize": human_size(virtual, 4),
    }
    # Sorted keys: docker marshals these rows as Go maps, so `{{json .}}` lists fields alphabetically.
    return [Row(dict(sorted({**base, "Digest": d, "Repository": r, "Tag": t}.items()))) for r, t, d in pairs]


def _familiar(repo: str) -> str:
    for prefix in ("docker.io/library/", "docker.io/"):
        if repo.startswith(prefix):
            return repo[len(prefix) :]
    return repo


def _split_tag(ref: str) -> tuple[str, str]:
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return _familiar(ref[:colon]), ref[colon + 1 :]
    return _familiar(ref), ""
