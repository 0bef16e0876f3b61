"""What the steps of one build share: the daemon's stores (BuildTools), a stage's state
(StageState), and the build's options, context and built stages with the primitives every step
ends with (StepContext): the cache lookup, a layer written to a file, the commit of a new image.

The step modules (buildrun.py for RUN, buildcopy.py for COPY/ADD) and the builder above them
import this module; it imports none of them.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from berth.api.routes.build import BuildOptions
from berth.build import instructions as ins
from berth.build.history import DEFAULT_SHELL
from berth.build.stages import SCRATCH, ArgScope, BuildPlan, find_stage
from berth.common.errors import BerthError, InvalidParameter, NotFound
from berth.images.store import Image, ImageStore, NewLayer
from berth.snapshots.overlay import LayerStore

from . import buildview
from .buildcache import BuildCache
from .containers import ContainerService
from .model import now_rfc3339

Message = dict[str, Any]
DOCKER_VERSION = "berth"


class BuildError(BerthError):
    """A build that failed after it started: reported in the stream, not as an HTTP status."""

    status = 400


@dataclass
class StageState:
    """Where a stage is: its current image (None: scratch so far) and that image's config."""

    image: Image | None
    config: dict[str, Any]  # the image config's `config`
    history: list[dict[str, Any]]
    diff_ids: list[str]
    chains: list[str]
    arch: str = "amd64"
    os: str = "linux"
    cmd_set: bool = False

    @property
    def id(self) -> str:
        return self.image.id if self.image is not None else SCRATCH

    @property
    def shell(self) -> list[str]:
        return list(self.config.get("Shell") or DEFAULT_SHELL)

    @property
    def workdir(self) -> str:
        return str(self.config.get("WorkingDir") or "/")


@dataclass
class BuildTools:
    """The daemon's parts a build uses; one per daemon, shared by the builds that run at once."""

    svc: ContainerService
    images: ImageStore
    layers: LayerStore
    cache: BuildCache
    commit_lock: asyncio.Lock  # parallel stages may add the same new layer at once
    cache_mounts: str  # RUN --mount=type=cache directories

    def view(self, image: Image | None) -> buildview.TreeView | None:
        if image is None:
            return None
        return buildview.TreeView([self.layers.diff_dir(c) for c in reversed(image.chains)])


def stream(text: str) -> Message:
    return {"stream": text}


class StepContext:
    """One build: its options, context, work directory and the stages built so far."""

    def __init__(self, tools: BuildTools, opts: BuildOptions, ctx: str, work: str) -> None:
        self.tools = tools
        self.opts = opts
        self.ctx = ctx
        self.work = work
        self.results: dict[int, StageState] = {}
        # --cache-from: only steps on the way to these images may be reused (none found: no cache)
        self.cache_sources: list[str] | None = None
        if opts.cache_from:
            self.cache_sources = []
            for ref in opts.cache_from:
                try:
                    self.cache_sources.append(tools.images.get(ref).id)
                except (NotFound, InvalidParameter):
                    pass

    def out(self, text: str) -> Message:
        return stream(text)

    def state_of(self, img: Image) -> StageState:
        cfg = img.config
        return StageState(img, json.loads(json.dumps(cfg.get("config") or {})), list(cfg.get("history") or []),
                          list(img.diff_ids), list(img.chains), cfg.get("architecture") or "amd64",
                          cfg.get("os") or "linux")


    @staticmethod
    def expand(scope: ArgScope, instr: ins.Instruction) -> ins.Instruction:
        if isinstance(instr, ins.Expose):
            return instr.expand(scope.expand_words)
        if isinstance(instr, (ins.Env, ins.Arg)):
            return instr  # ArgScope expands them while it applies them
        fn = getattr(instr, "expand", None)
        return fn(scope.expand) if fn is not None else instr  # type: ignore[no-any-return]

    async def cached(self, state: StageState, key: str) -> bool:
        if self.opts.nocache:
            return False
        image_id = self.tools.cache.get(key)
        if image_id is None:
            return False
        if self.cache_sources is not None and not any(
                self.tools.cache.descends_from(src, image_id) for src in self.cache_sources):
            return False
        img = self.tools.images.get(image_id)
        new = self.state_of(img)
        new.cmd_set = state.cmd_set
        state.__dict__.update(new.__dict__)
        return True

    async def commit(self, state: StageState, created_by: str, layer: tuple[str, str] | None, key: str,
                      comment: str = "") -> None:
        created = now_rfc3339()
        entry: dict[str, Any] = {"created": created, "created_by": created_by}
        if comment:
            entry["comment"] = comment
        diff_ids = list(state.diff_ids)
        layers = [NewLayer(open=self.tools.images.layer_opener(chain)) for chain in state.chains]
        if layer is not None:
            path, diff_id = layer
            diff_ids.append(diff_id)
            layers.append(NewLayer(open=lambda: open(path, "rb")))
        else:
            entry["empty_layer"] = True
        image_config = {
            "architecture": state.arch, "os": state.os, "config": state.config, "created": created,
            "docker_version": DOCKER_VERSION, "history": [*state.history, entry],
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
        data = json.dumps(image_config).encode()
        async with self.tools.commit_lock:
            img, _ = await asyncio.to_thread(self.tools.images.add, data, layers, [])
        if layer is not None:
            os.unlink(layer[0])
        self.tools.cache.put(key, img.id)
        if state.image is not None:
            self.tools.images.set_parent(img.id, state.image.id)
        cmd_set = state.cmd_set
        state.__dict__.update(self.state_of(img).__dict__)
        state.cmd_set = cmd_set

    def write(self, fn: Callable[[BinaryIO], str]) -> tuple[str, str]:
        path = os.path.join(self.work, "layer-" + os.urandom(6).hex())
        with open(path, "wb") as f:
            diff_id = fn(f)
        return path, diff_id

    def source_view(self, bp: BuildPlan, ref: str, kind: str) -> buildview.TreeView:
        """The files of a stage (built before this one: it is a dependency) or of an image."""
        index = find_stage(bp.nodes, ref)
        if index >= 0 and index in self.results:
            src_img = self.results[index].image
        else:
            try:
                src_img = self.tools.images.get(ref)
            except NotFound:
                raise BuildError(f"{kind} failed: no stage or image named {ref}") from None
        view = self.tools.view(src_img)
        return view if view is not None else buildview.TreeView([])
