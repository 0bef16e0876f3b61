"""`docker commit`: a container's writable layer becomes the top layer of a new image.

The layer is the overlay upper directory written as an image layer (whiteouts converted), less
the mount points the runtime made for /etc/hosts and friends (dockerd keeps those in an init
layer that commit never sees). A container that changed nothing adds an empty history entry and
no layer, as dockerd does. The config is dockerd's: the request's config with `changes` applied,
its unset fields taken from the container's config.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from berth.common import reference
from berth.common.errors import Conflict, InvalidParameter
from berth.images.changes import apply_changes
from berth.images.store import ImageStore, NewLayer
from berth.runtime.etcfiles import INIT_FILES
from berth.snapshots.tarwrite import write_layer

from .containers import ContainerService
from .model import Container, now_rfc3339

DOCKER_VERSION = "berth"


def merge_config(user: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
    """dockerd's commit merge: what the user's config leaves unset comes from the container's."""
    out = dict(container)
    for key, value in user.items():
        if value in (None, "", [], {}):
            continue
        out[key] = value
    if user.get("Env"):
        keys = {e.split("=", 1)[0] for e in user["Env"]}
        out["Env"] = [*user["Env"], *(e for e in container.get("Env") or [] if e.split("=", 1)[0] not in keys)]
    for key in ("Labels", "ExposedPorts", "Volumes"):
        if user.get(key):
            out[key] = {**(container.get(key) or {}), **user[key]}
    if user.get("Entrypoint") and not user.get("Cmd"):
        out["Cmd"] = None  # a new entrypoint does not inherit the old command
    return out


class CommitAPI:
    def __init__(self, svc: ContainerService, images: ImageStore, tmp_dir: str) -> None:
        self.svc = svc
        self.images = images
        self.tmp_dir = tmp_dir
        os.makedirs(tmp_dir, exist_ok=True)

    async def commit(self, ref: str, repo: str, tag: str, comment: str, author: str, pause: bool,
                     changes: list[str], config: dict[str, Any] | None) -> str:
        c = self.svc.get(ref)
        name = ""
        if repo:
            name = f"{repo}:{tag}" if tag else repo
            try:
                reference.parse(name)
            except reference.InvalidReference as e:
                raise InvalidParameter(str(e)) from None
            if reference.parse(name).digest:
                raise InvalidParameter("refusing to create a tag with a digest reference")
        elif tag:
            raise InvalidParameter("tag is given without a repository")
        new_config = merge_config(apply_changes(dict(config or {}), changes), c.config)
        runtime = self.svc.runtimes[c.runtime]
        paused = pause and c.running and not c.state["Paused"] and not c.state["Restarting"]
        if paused:
            try:
                await runtime.pause(c.id)
            except Conflict:  # it exited just now: nothing to hold still
                paused = False
        try:
            layer = await asyncio.to_thread(self._write_layer, c)
        finally:
            if paused:
                try:
                    await runtime.resume(c.id)
                except Conflict:
                    pass
        try:
            image_id = await asyncio.to_thread(self._add_image, c, layer, new_config, comment, author, name)
        finally:
            if layer:
                os.unlink(layer[0])
        attrs = {"comment": comment, "imageID": image_id}
        if name:
            attrs["imageRef"] = reference.familiar(reference.normalize(name))
        self.svc._event(c, "commit", **attrs)
        return image_id

    def _write_layer(self, c: Container) -> tuple[str, str] | None:
        """(layer tar file, its DiffID) of the container's changes; None when it changed nothing."""
        if not self.svc.layers.changes(c.id, c.top_chain, INIT_FILES):
            return None
        path = os.path.join(self.tmp_dir, "commit-" + os.urandom(8).hex())
        exclude = [p.lstrip("/") for p in INIT_FILES]
        try:
            with open(path, "wb") as f:
                diff_id = write_layer(self.svc.layers.upper_dir(c.id), f, exclude)
        except BaseException:
            os.unlink(path)
            raise
        return path, diff_id

    def _add_image(self, c: Container, layer: tuple[str, str] | None, config: dict[str, Any], comment: str,
                   author: str, name: str) -> str:
        parent = self.images.get(c.image_id)
        diff_ids = list(parent.diff_ids)
        # the parent's layers are in the store already (`add` skips them): the openers are for form
        layers = [NewLayer(open=self.images.layer_opener(chain)) for chain in parent.chains]
        created = now_rfc3339()
        entry: dict[str, Any] = {"created": created, "created_by": " ".join(c.config.get("Cmd") or [])}
        if author:
            entry["author"] = author
        if comment:
            entry["comment"] = comment
        if layer is not None:
            path, diff_id = layer
            diff_ids.append(diff_id)
            layers.append(NewLayer(open=lambda: open(path, "rb")))
        else:
            entry["empty_layer"] = True
        image_config: dict[str, Any] = {
            "architecture": parent.config.get("architecture") or "amd64",
            "os": parent.config.get("os") or "linux",
            "config": config,
            "container": c.id,
            "container_config": c.config,
            "created": created,
            "docker_version": DOCKER_VERSION,
            "history": [*(parent.config.get("history") or []), entry],
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
        if parent.config.get("variant"):
            image_config["variant"] = parent.config["variant"]
        if author:
            image_config["author"] = author
        if comment:
            image_config["comment"] = comment
        img, _ = self.images.add(json.dumps(image_config).encode(), layers, [name] if name else [])
        self.images.set_parent(img.id, parent.id)
        return img.id

