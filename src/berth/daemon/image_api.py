"""The API's ImageBackend: list, inspect, history, tag, rmi, load, save, import, prune."""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import json
import os
import platform
import shutil
import urllib.request
from collections.abc import AsyncIterator, Callable
from typing import Any, BinaryIO

from berth.common import reference
from berth.common.errors import BerthError, InvalidParameter, NotFound
from berth.images import archive
from berth.images.changes import apply_changes
from berth.images.store import Image, ImageStore, NewLayer
from berth.snapshots.decompress import open_decompressed

from .distribution_api import DistributionAPI
from .events import EventBus
from .model import now_rfc3339, prune_until, rfc3339_to_unix
from .streams import stream_from_thread as _stream_from_thread

GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


def host_arch() -> str:
    m = platform.machine()
    return GO_ARCH.get(m, m)


class ImageAPI:
    def __init__(self, store: ImageStore, events: EventBus, tmp_dir: str, api_version: Callable[[], str]):
        self.store = store
        self.events = events
        self.tmp_dir = tmp_dir
        os.makedirs(tmp_dir, exist_ok=True)
        self._api_version = api_version
        self.distribution: DistributionAPI | None = None  # set by the composition root

    def _event(self, action: str, img_id: str, name: str) -> None:
        self.events.publish("image", action, img_id, {"name": name})

    # --- read side -------------------------------------------------------------------------
    def _familiar_tags(self, img: Image) -> list[str]:
        return [reference.familiar(t) for t in img.tags if "@" not in t]

    def _digests(self, img: Image) -> list[str]:
        return [reference.familiar(t) for t in img.tags if "@" in t]

    def list_images(self, all_: bool, filters: dict[str, list[str]], digests: bool) -> list[dict[str, Any]]:
        out = []
        for img in self.store.all():
            tags = self._familiar_tags(img)
            if not self._matches(img, tags, filters):
                continue
            if not all_ and not img.tags and self.store.children(img.id):
                continue  # a build's intermediate step: shown by `images -a` only, as dockerd
            repo_digests = self._digests(img)
            if filters.get("reference"):
                # as dockerd: only the matching tags and digests
                tags = _matching_tags(tags, filters["reference"])
                repo_digests = _matching_tags(repo_digests, filters["reference"])
            cfg = img.config.get("config") or {}
            out.append({
                "Id": img.id, "ParentId": self.store.parent(img.id), "RepoTags": tags or ["<none>:<none>"],
                "RepoDigests": repo_digests or (["<none>@<none>"] if not tags else []),
                "Created": int(rfc3339_to_unix(img.created)), "Size": img.size, "SharedSize": -1,
                "VirtualSize": img.size, "Labels": cfg.get("Labels") or {}, "Containers": -1,
            })
        return out

    def _matches(self, img: Image, tags: list[str], f: dict[str, list[str]]) -> bool:
        for val in f.get("dangling", []):
            if val.lower() not in ("true", "false", "1", "0"):
                raise InvalidParameter(f"Invalid filter 'dangling={val}'")
            want = val.lower() in ("true", "1")
            if want != (not tags):
                return False
        if f.get("reference") and not _matching_tags(tags, f["reference"]):
            return False
        labels = (img.config.get("config") or {}).get("Labels") or {}
        for item in f.get("label", []):
            key, sep, val = item.partition("=")
            if key not in labels or (sep and labels[key] != val):
                return False
        for key, newer in (("since", True), ("before", False)):
            for ref in f.get(key, []):
                other = self.store.get(ref)
                if (img.created <= other.created) if newer else (img.created >= other.created):
                    return False
        return True

    def inspect(self, name: str) -> dict[str, Any]:
        img = self.store.get(name)
        cfg = img.config
        lowers = []
        for chain in reversed(img.chains):
            lowers.append(self.store.layers.diff_dir(chain))
        graph: dict[str, Any] = {"Name": "overlay2", "Data": {}}
        if lowers:
            graph["Data"] = {"MergedDir": "", "UpperDir": lowers[0], "WorkDir": "",
                             **({"LowerDir": ":".join(lowers[1:])} if len(lowers) > 1 else {})}
        return {
            "Id": img.id, "RepoTags": self._familiar_tags(img), "RepoDigests": self._digests(img),
            "Parent": self.store.parent(img.id), "Comment": _comment(cfg), "Created": img.created,
            "Container": cfg.get("container", ""),
            "ContainerConfig": _full_config(cfg.get("container_config") or {}),
            "DockerVersion": cfg.get("docker_version", ""), "Author": cfg.get("author", ""),
            "Config": _full_config(cfg["config"]) if isinstance(cfg.get("config"), dict) else None,
            "Architecture": cfg.get("architecture", ""),
            **({"Variant": cfg["variant"]} if cfg.get("variant") else {}),
            "Os": cfg.get("os", "linux"), "Size": img.size,
            "VirtualSize": img.size, "GraphDriver": graph,
            "RootFS": {"Type": "layers", "Layers": img.diff_ids},
            "Metadata": {"LastTagTime": img.last_tag_time or "0001-01-01T00:00:00Z"},
        }

    def history(self, name: str) -> list[dict[str, Any]]:
        try:
            img = self.store.get(name)
        except NotFound:
            if "@" in name or all(ch in "0123456789abcdef" for ch in name.removeprefix("sha256:")):
                raise
            try:  # dockerd names the reference it looked for: with its default tag
                wanted = reference.familiar(reference.normalize(name))
            except reference.InvalidReference:
                raise NotFound(f"No such image: {name}") from None
            raise NotFound(f"No such image: {wanted}") from None
        entries = img.config.get("history") or []
        sizes = []
        for chain in img.chains:
            rows = self.store.db.query("SELECT size FROM layers WHERE chain_id=?", (chain,))
            sizes.append(rows[0]["size"] if rows else 0)
        out = []
        layer = 0
        for h in entries:
            size = 0
            if not h.get("empty_layer"):
                size = sizes[layer] if layer < len(sizes) else 0
                layer += 1
            out.append({"Id": "<missing>", "Created": int(rfc3339_to_unix(h.get("created", ""))),
                        "CreatedBy": h.get("created_by", ""), "Tags": None, "Size": size,
                        "Comment": h.get("comment", "")})
        if not out:
            out = [{"Id": "<missing>", "Created": int(rfc3339_to_unix(img.created)), "CreatedBy": "",
                    "Tags": None, "Size": img.size, "Comment": ""}]
        out.reverse()
        # As dockerd: entries from the top take the IDs of the image and its Parent chain.
        cur: Image | None = img
        for entry in out:
            if cur is None:
                break
            entry["Id"] = cur.id
            entry["Tags"] = self._familiar_tags(cur) or None
            parent = self.store.parent(cur.id)
            try:
                cur = self.store.get(parent) if parent else None
            except NotFound:
                cur = None
        return out

    # --- tag / rmi -------------------------------------------------------------------------
    def tag(self, name: str, repo: str, tag: str | None) -> None:
        img = self.store.get(name)
        ref = f"{repo}:{tag}" if tag else repo
        self.store.tag(img.id, ref)
        self._event("tag", img.id, reference.familiar(reference.normalize(ref)))

    async def delete(self, name: str, force: bool, prune: bool) -> list[dict[str, str]]:
        records = await asyncio.to_thread(self.store.delete, name, force, prune)
        for r in records:
            if "Untagged" in r:
                self._event("untag", r["Untagged"], r["Untagged"])
            elif "Deleted" in r:
                self._event("delete", r["Deleted"], r["Deleted"])
        return records

    async def prune(self, filters: dict[str, list[str]]) -> dict[str, Any]:
        dangling_only = True
        for val in filters.get("dangling", []):
            dangling_only = val.lower() in ("true", "1")
        until = prune_until(filters)
        deleted: list[dict[str, str]] = []
        reclaimed = 0
        pending = self.store.all()
        progressed = True
        while progressed:  # an image others were built on can go once they have gone
            progressed = False
            for img in list(pending):
                if dangling_only and (img.tags or self.store.children(img.id)):
                    continue  # dangling = untagged heads; deleting one takes its unused parents along
                if self.store.usage.users(img.id):
                    continue
                if filters.get("label") and not self._matches(img, [], {"label": filters["label"]}):
                    continue
                if filters.get("label!") and self._matches(img, [], {"label": filters["label!"]}):
                    continue
                if until is not None and rfc3339_to_unix(img.created) > until:
                    continue  # created after `until`: kept
                try:
                    recs = await asyncio.to_thread(self.store.delete, img.id, True, True)
                except BerthError:
                    continue
                pending.remove(img)
                progressed = True
                reclaimed += img.size
                deleted.extend(recs)
        self.events.publish("image", "prune", "", {"reclaimed": str(reclaimed)})
        return {"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    # --- load / import ---------------------------------------------------------------------
    async def _spool(self, body: AsyncIterator[bytes]) -> str:
        path = os.path.join(self.tmp_dir, "upload-" + os.urandom(8).hex())
        with open(path, "wb") as f:
            async for chunk in body:
                f.write(chunk)
        return path

    async def load(self, body: AsyncIterator[bytes], quiet: bool) -> AsyncIterator[dict[str, Any]]:
        path = await self._spool(body)
        try:
            loaded = await asyncio.to_thread(self._load_file, path)
        finally:
            os.unlink(path)
        for img, tags, displaced in loaded:
            for t, old in displaced:
                yield {"stream": f"The image {t} already exists, renaming the old one with ID {old} "
                                 "to empty string\n"}
            if tags:
                for t in tags:
                    self._event("load", img.id, t)
                    yield {"stream": f"Loaded image: {t}\n"}
            else:
                self._event("load", img.id, img.id)
                yield {"stream": f"Loaded image ID: {img.id}\n"}

    def _load_file(self, path: str) -> list[tuple[Image, list[str], list[tuple[str, str]]]]:
        arc = archive.open_archive(path)
        out = []
        try:
            for ai in arc.images:
                layers = [NewLayer(open=_opener(arc, m)) for m in ai.layers]
                tags = [reference.familiar(reference.normalize(t)) for t in ai.repo_tags]
                before = {t: self._tag_target(t) for t in tags}
                img, _ = self.store.add(ai.config, layers, tags)
                displaced = [(t, old) for t, old in before.items() if old and old != img.id]
                out.append((img, tags, displaced))
        finally:
            arc.close()
        return out

    def _tag_target(self, tag: str) -> str | None:
        try:
            return self.store.get(tag).id
        except (NotFound, InvalidParameter):
            return None

    async def import_image(self, src: str, body: AsyncIterator[bytes], repo: str, tag: str,
                           changes: list[str], message: str) -> AsyncIterator[dict[str, Any]]:
        ref = ""
        if repo:
            ref = f"{repo}:{tag}" if tag else repo
            try:
                reference.parse(ref)
            except reference.InvalidReference as e:
                raise InvalidParameter(str(e)) from None
        config_changes = apply_changes({}, changes)
        if src == "-":
            path = await self._spool(body)
        else:
            await _drain(body)
            path = await asyncio.to_thread(self._download, src)
        try:
            img = await asyncio.to_thread(self._import_file, path, src, ref, config_changes, message)
        finally:
            os.unlink(path)
        self._event("import", img.id, ref or img.id)
        yield {"status": img.id}

    def _download(self, url: str) -> str:
        if "://" not in url:
            url = "http://" + url
        path = os.path.join(self.tmp_dir, "download-" + os.urandom(8).hex())
        try:
            with urllib.request.urlopen(url, timeout=30) as resp, open(path, "wb") as f:
                shutil.copyfileobj(resp, f, 1 << 20)
        except OSError as e:
            raise InvalidParameter(f"cannot download {url}: {e}") from None
        return path

    def _import_file(self, path: str, src: str, ref: str, cfg: dict[str, Any], message: str) -> Image:
        # The DiffID (sha256 of the uncompressed tar) is in the config, so hash first, then store.
        h = hashlib.sha256()
        with open(path, "rb") as f:
            raw = open_decompressed(f)
            while chunk := raw.read(1 << 20):
                h.update(chunk)
        diff_id = "sha256:" + h.hexdigest()
        created = now_rfc3339()
        config = {
            "architecture": host_arch(), "os": "linux", "created": created, "config": cfg,
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": created, "comment": message or f"Imported from {src}"}],
        }
        if message:
            config["comment"] = message
        img, _ = self.store.add(json.dumps(config).encode(), [NewLayer(open=lambda: open(path, "rb"))],
                                [ref] if ref else [])
        return img

    def pull(self, image: str, tag: str, platform: str, auth: str | None = None) -> AsyncIterator[dict[str, Any]]:
        if self.distribution is None:
            raise NotFound(f"pull access denied for {image}: this berthd has no registry client")
        return self.distribution.pull(image, tag, platform, auth)

    # --- save ------------------------------------------------------------------------------
    def save(self, names: list[str]) -> AsyncIterator[bytes]:
        to_save: dict[str, archive.SaveImage] = {}
        for name in names:
            img = self.store.get(name)
            tags: list[str] = []
            if not _is_id(img.id, name):
                tags = [reference.familiar(reference.normalize(name))]
            if img.id in to_save:
                to_save[img.id].repo_tags.extend(t for t in tags if t not in to_save[img.id].repo_tags)
                continue
            layers = []
            for chain, diff_id in zip(img.chains, img.diff_ids, strict=True):
                layers.append(archive.SaveLayer(diff_id=diff_id, size=self.store.layer_tar_size(chain),
                                                open=self.store.layer_opener(chain)))
            to_save[img.id] = archive.SaveImage(config=self.store.content.read(img.id), repo_tags=tags,
                                                layers=layers)
        images = list(to_save.values())
        return _stream_from_thread(lambda out: archive.write_archive(out, images))


# the fields dockerd's image inspect always shows in Config/ContainerConfig, at their zero values
_CONFIG_ZERO: dict[str, Any] = {
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
    "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None, "Cmd": None,
    "Image": "", "Volumes": None, "WorkingDir": "", "Entrypoint": None, "OnBuild": None, "Labels": None,
}


def _full_config(cfg: dict[str, Any]) -> dict[str, Any]:
    return {**_CONFIG_ZERO, **cfg}


def _matching_tags(refs: list[str], patterns: list[str]) -> list[str]:
    """The references (`name:tag` or `name@digest`) that a pattern matches whole or by name."""
    out = []
    for t in refs:
        repo = t.split("@", 1)[0] if "@" in t else t.rsplit(":", 1)[0] if ":" in t.rsplit("/", 1)[-1] else t
        if any(fnmatch.fnmatch(t, p) or fnmatch.fnmatch(repo, p) for p in patterns):
            out.append(t)
    return out


def _is_id(image_id: str, name: str) -> bool:
    hexpart = name[7:] if name.startswith("sha256:") else name
    return image_id[7:].startswith(hexpart) and all(c in "0123456789abcdef" for c in hexpart)


def _opener(arc: archive.Archive, member: str) -> Callable[[], BinaryIO]:
    return lambda: arc.open_member(member)


def _comment(cfg: dict[str, Any]) -> str:
    if cfg.get("comment"):
        return str(cfg["comment"])
    hist = cfg.get("history") or []
    return str(hist[-1].get("comment", "")) if hist else ""


async def _drain(body: AsyncIterator[bytes]) -> None:
    async for _ in body:
        pass
