"""The legacy builder (`POST /build`): runs a Dockerfile's steps and caches each one.

The frontend (`berth.build`) parses and plans; this module executes. Each step yields an image in
the image store: RUN runs a container through the ContainerService and commits its writable
layer (buildrun.py); COPY/ADD writes a layer from the context or another stage or image
(buildcopy.py); WORKDIR writes one only for a missing directory; every other instruction
changes only the config (an `empty_layer` history entry).
A step whose (parent image, expanded instruction, copied content) was built before is taken
from the cache (`buildcache`). Progress is docker's legacy JSON stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import posixpath
import re
import shutil
import time
from collections.abc import AsyncIterator
from typing import Any

from berth.api.routes.build import BuildOptions
from berth.build import instructions as ins
from berth.build.errors import DockerfileError, ExpansionError
from berth.build.history import created_by_workdir, nop, nop_comment, resolve_cmdline, step_line
from berth.build.parse import parse_dockerfile
from berth.build.stages import SCRATCH, ArgScope, BuildPlan, plan, platform_args
from berth.common import reference
from berth.common.errors import BerthError, InvalidParameter, NotFound
from berth.common.ids import new_id
from berth.images.store import ImageStore
from berth.snapshots.overlay import LayerStore
from berth.snapshots.tarapply import extract_archive

from . import buildcontext, buildcopy, buildfs, buildmounts, buildrun, buildsched
from .buildcache import BuildCache, step_key
from .buildstep import BuildError, BuildTools, Message, StageState, StepContext, stream
from .containers import ContainerService

log = logging.getLogger("berth.builder")
PLATFORM = "linux/amd64"
_IMAGE_LINE = re.compile(r" ---> [0-9a-f]{12}\n")


class Builder:
    def __init__(self, svc: ContainerService, images: ImageStore, layers: LayerStore, cache: BuildCache,
                 tmp_dir: str, cache_mounts: str = "") -> None:
        self.tmp_dir = tmp_dir
        self.cache = cache
        # RUN --mount=type=cache directories: they must outlive builds and restarts (not in tmp)
        self.cache_mounts = cache_mounts or os.path.join(os.path.dirname(os.path.normpath(tmp_dir)), "build-mounts")
        self.tools = BuildTools(svc, images, layers, cache, asyncio.Lock(), self.cache_mounts)
        os.makedirs(tmp_dir, exist_ok=True)

    async def build(self, opts: BuildOptions, body: AsyncIterator[bytes]) -> AsyncIterator[Message]:
        work = os.path.join(self.tmp_dir, "build-" + os.urandom(8).hex())
        os.makedirs(work)
        try:
            ctx = await self._receive_context(body, work)
            run = _Run(self.tools, opts, ctx, work)
            async for msg in run.execute():
                if not opts.quiet:
                    yield msg
                elif "aux" in msg:  # -q: dockerd sends only the image ID, as a stream line
                    yield stream(msg["aux"]["ID"] + "\n")
        except BerthError:
            raise
        except Exception as e:  # a fault of berth's: end the stream with it rather than hang up
            log.exception("build failed")
            raise BuildError(f"build failed: {e}") from e
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)

    async def _receive_context(self, body: AsyncIterator[bytes], work: str) -> str:
        tar_path = os.path.join(work, "context.tar")
        with open(tar_path, "w+b") as f:
            async for chunk in body:
                f.write(chunk)
            # The docker CLI sends a context whose Dockerfile lives outside it (`-f /elsewhere`)
            # without the last entry's padding and the end-of-archive blocks; Go's reader takes
            # that, so complete a plain tar here rather than refuse it.
            f.seek(257)
            if f.read(5) == b"ustar":
                f.seek(0, os.SEEK_END)
                f.write(bytes(-f.tell() % 512 + 1024))
        ctx = os.path.join(work, "context")
        os.makedirs(ctx)

        def extract() -> None:
            if os.path.getsize(tar_path) == 0:
                return
            fd = os.open(ctx, os.O_RDONLY | os.O_DIRECTORY)
            try:
                with open(tar_path, "rb") as src:
                    extract_archive(src, fd)
            finally:
                os.close(fd)
                os.unlink(tar_path)

        await asyncio.to_thread(extract)
        return ctx

    def prune_cache(self) -> dict[str, Any]:
        """`builder prune`: forget every cached step and empty the RUN cache mounts. The step
        images stay: untagged ones are `image prune`'s, as with dockerd's legacy builder."""
        self.cache.prune()
        deleted, reclaimed = [], 0
        for name, size, _ in buildmounts.cache_usage(self.cache_mounts):
            shutil.rmtree(os.path.join(self.cache_mounts, name), ignore_errors=True)
            deleted.append(name)
            reclaimed += size
        return {"CachesDeleted": deleted, "SpaceReclaimed": reclaimed}

    def cache_usage(self) -> list[dict[str, Any]]:
        """`/system/df`'s BuildCache: the RUN cache mounts (what `builder prune` frees)."""
        return [{"ID": name, "Parent": "", "Parents": [], "Type": "exec.cachemount",
                 "Description": "cache mount of RUN --mount=type=cache", "InUse": False, "Shared": False,
                 "Size": size, "CreatedAt": _rfc3339(used), "LastUsedAt": _rfc3339(used), "UsageCount": 1}
                for name, size, used in buildmounts.cache_usage(self.cache_mounts)]


def _rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class _Run:
    """One build: its plan, stages in order (independent ones at once) and the steps of each."""

    def __init__(self, tools: BuildTools, opts: BuildOptions, ctx: str, work: str) -> None:
        self.step = StepContext(tools, opts, ctx, work)
        self.opts = opts
        self.total = 0

    async def execute(self) -> AsyncIterator[Message]:
        raw = buildcontext.find_dockerfile(self.step.ctx, self.opts.dockerfile)
        await asyncio.to_thread(buildcontext.apply_dockerignore, self.step.ctx, self.opts.dockerfile)
        try:
            dockerfile = parse_dockerfile(raw)
        except DockerfileError as e:
            name = posixpath.basename(self.opts.dockerfile)
            if name.startswith(".dockerfile."):  # the CLI's name for a Dockerfile outside the context
                name = "Dockerfile"
            raise DockerfileError(e.reason, e.line, e.column, e.end_line, name) from None
        bp = plan(dockerfile, self.opts.build_args, self.opts.target or None, platform_args(PLATFORM))
        needed = [dockerfile.stages[i] for i in bp.order]
        self.total = len(dockerfile.meta_args) + sum(1 + len(s.commands) for s in needed)
        step = 0
        for meta in dockerfile.meta_args:
            step += 1
            yield self.step.out(step_line(step, self.total, meta))
        first_steps = {}
        for index in bp.order:
            first_steps[index] = step + 1
            step += 1 + len(dockerfile.stages[index].commands)
        deps = {i: bp.nodes[i].deps for i in bp.order}
        # Independent stages build at the same time (RUN containers are where the time goes).
        async for msg in buildsched.ordered(
                bp.order, deps, lambda i: self._stage(bp, i, dockerfile.escape, first_steps[i]),
                limit=max(2, os.cpu_count() or 1)):
            yield msg
        state = self.step.results[bp.order[-1]]
        if state.image is None:
            raise BuildError("No image was generated. Is your Dockerfile empty?")
        image = state.image
        yield {"aux": {"ID": image.id}}
        yield self.step.out(f"Successfully built {image.id[7:19]}\n")
        for t in self.opts.tags:
            self.step.tools.images.tag(image.id, t)
            yield self.step.out(f"Successfully tagged {reference.familiar(reference.normalize(t))}\n")

    # --- stages ---------------------------------------------------------------------------------
    async def _stage(self, bp: BuildPlan, index: int, escape: str, step: int) -> AsyncIterator[Message]:
        node = bp.nodes[index]
        yield self.step.out(step_line(step, self.total, node.stage.from_))
        if node.base_stage is not None:
            base = self.step.results[node.base_stage]
            state = StageState(base.image, json.loads(json.dumps(base.config)), list(base.history),
                               list(base.diff_ids), list(base.chains), base.arch, base.os)
        elif node.base.lower() == SCRATCH:
            state = StageState(None, {}, [], [], [])
        else:
            try:
                img = self.step.tools.images.get(node.base)
            except NotFound:
                raise BuildError(f"pull access denied for {node.base}: no such image in berth's store "
                                 "and no registry client yet (load or import it first)") from None
            state = self.step.state_of(img)
        triggers = [str(t) for t in state.config.get("OnBuild") or []]
        if state.image is not None and not triggers:
            yield self.step.out(f" ---> {state.image.id[7:19]}\n")
        env = dict(e.split("=", 1) for e in (state.config.get("Env") or []) if "=" in e)
        scope = ArgScope(self.opts.build_args, bp.meta_args, env=env, escape=escape)
        if triggers:
            # The base image's ONBUILD triggers run first, as if written under this FROM; the
            # new image does not inherit them.
            state.config["OnBuild"] = None
            yield self.step.out(f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}\n")
            for trigger in triggers:
                instr = _parse_trigger(trigger, escape)
                try:
                    async for msg in self._dispatch(bp, state, scope, instr):
                        if not _IMAGE_LINE.fullmatch(msg.get("stream", "")):  # dockerd: one at the end
                            yield msg
                except ExpansionError as e:
                    raise BuildError(f"ONBUILD {trigger}: {e}") from None
            assert state.image is not None
            yield self.step.out(f" ---> {state.image.id[7:19]}\n")
        for instr in node.stage.commands:
            step += 1
            yield self.step.out(step_line(step, self.total, instr))
            try:
                async for msg in self._dispatch(bp, state, scope, instr):
                    yield msg
            except ExpansionError as e:
                raise DockerfileError(str(e), instr.line, 1, instr.end_line) from None
        if index == bp.target and self.opts.labels:  # dockerd commits them even on bare scratch
            labels = ins.Label("LABEL", 0, 0, tuple(ins.KeyValue(k, v) for k, v in sorted(self.opts.labels.items())))
            state.config["Labels"] = {**(state.config.get("Labels") or {}), **self.opts.labels}
            async for msg in self._meta(state, labels, nop(state.shell, nop_comment(labels)), quiet=True):
                yield msg
        self.step.results[index] = state

    async def _dispatch(self, bp: BuildPlan, state: StageState, scope: ArgScope,
                        instr: ins.Instruction) -> AsyncIterator[Message]:
        if isinstance(instr, ins.Run):
            async for msg in buildrun.run_step(self.step, bp, state, scope, instr):
                yield msg
            return
        if isinstance(instr, ins.CopyBase):
            async for msg in buildcopy.copy_step(self.step, bp, state, scope, instr):
                yield msg
            return
        if isinstance(instr, ins.Workdir):
            async for msg in self._workdir(state, scope, instr):
                yield msg
            return
        expanded = self.step.expand(scope, instr)
        config = state.config
        shell = state.shell
        if isinstance(expanded, ins.Env):
            expanded = scope.set_env(expanded)
            env = list(config.get("Env") or [])
            for pair in expanded.pairs:
                env = [e for e in env if e.split("=", 1)[0] != pair.key] + [f"{pair.key}={pair.value}"]
            config["Env"] = env
        elif isinstance(expanded, ins.Arg):
            expanded = scope.declare(expanded)
        elif isinstance(expanded, ins.Label):
            config["Labels"] = {**(config.get("Labels") or {}), **{p.key: p.value for p in expanded.pairs}}
        elif isinstance(expanded, ins.Expose):
            ports = dict(config.get("ExposedPorts") or {})
            for p in expanded.ports:
                ports[p if "/" in p else p + "/tcp"] = {}
            config["ExposedPorts"] = ports
        elif isinstance(expanded, ins.User):
            config["User"] = expanded.user
        elif isinstance(expanded, ins.Volume):
            config["Volumes"] = {**(config.get("Volumes") or {}), **{v: {} for v in expanded.volumes}}
        elif isinstance(expanded, ins.StopSignal):
            config["StopSignal"] = expanded.signal
        elif isinstance(expanded, ins.Shell):
            config["Shell"] = list(expanded.shell)
        elif isinstance(expanded, ins.Onbuild):
            config["OnBuild"] = [*(config.get("OnBuild") or []), expanded.expression]
        elif isinstance(expanded, ins.Cmd):
            config["Cmd"] = resolve_cmdline(expanded.cmd, expanded.prepend_shell, shell)
            state.cmd_set = True
        elif isinstance(expanded, ins.Entrypoint):
            config["Entrypoint"] = None if expanded.reset else resolve_cmdline(expanded.cmd,
                                                                               expanded.prepend_shell, shell)
            if not state.cmd_set:
                config["Cmd"] = None
        elif isinstance(expanded, ins.Healthcheck):
            hc: dict[str, Any] = {"Test": list(expanded.test)}
            for key, value in (("Interval", expanded.interval), ("Timeout", expanded.timeout),
                               ("StartPeriod", expanded.start_period),
                               ("StartInterval", expanded.start_interval), ("Retries", expanded.retries)):
                if value:
                    hc[key] = value
            config["Healthcheck"] = hc
        elif isinstance(expanded, ins.Maintainer):
            pass
        else:
            raise InvalidParameter(f"unsupported instruction {instr.name.upper()}")
        created_by = nop(shell, nop_comment(expanded, shell))
        async for msg in self._meta(state, expanded, created_by):
            yield msg

    async def _meta(self, state: StageState, instr: ins.Instruction, created_by: str,
                    quiet: bool = False) -> AsyncIterator[Message]:
        """A config-only step (dockerd shows a container it does not need to run for it)."""
        key = step_key(state.id, "meta", created_by, json.dumps(state.config, sort_keys=True))
        if await self.step.cached(state, key):
            if not quiet:
                yield self.step.out(" ---> Using cache\n")
        else:
            if not quiet:
                cid = new_id()[:12]
                yield self.step.out(f" ---> Running in {cid}\n")
                if self.opts.rm or self.opts.forcerm:
                    yield self.step.out(f"Removing intermediate container {cid}\n")
            await self.step.commit(state, created_by, None, key)
        if not quiet:
            assert state.image is not None
            yield self.step.out(f" ---> {state.image.id[7:19]}\n")

    # --- WORKDIR --------------------------------------------------------------------------------
    async def _workdir(self, state: StageState, scope: ArgScope, instr: ins.Workdir) -> AsyncIterator[Message]:
        path = instr.expand(scope.expand).path
        workdir = posixpath.normpath(posixpath.join(state.workdir, path))
        state.config["WorkingDir"] = workdir
        created_by = created_by_workdir(state.shell, workdir)
        view = self.step.tools.view(state.image)
        rel = workdir.lstrip("/")
        missing = bool(rel) and (view is None or view.lookup(rel)[1] is None)
        if not missing:
            async for msg in self._meta(state, instr, created_by):
                yield msg
            return
        key = step_key(state.id, "workdir", created_by, json.dumps(state.config, sort_keys=True))
        if await self.step.cached(state, key):
            yield self.step.out(" ---> Using cache\n")
        else:
            cid = new_id()[:12]
            yield self.step.out(f" ---> Running in {cid}\n")
            plan = buildfs.plan_dirs(workdir, view)
            layer = await asyncio.to_thread(self.step.write, lambda f: buildfs.write_copy_layer(plan, f))
            await self.step.commit(state, created_by, layer, key)
            yield self.step.out(f"Removing intermediate container {cid}\n")
        assert state.image is not None
        yield self.step.out(f" ---> {state.image.id[7:19]}\n")


def _parse_trigger(trigger: str, escape: str) -> ins.Instruction:
    """An ONBUILD trigger as the instruction it holds."""
    directive = f"# escape={escape}\n" if escape != "\\" else ""
    try:
        parsed = parse_dockerfile(f"{directive}FROM scratch\n{trigger}\n".encode("utf-8", "surrogateescape"))
    except DockerfileError as e:
        raise BuildError(f"ONBUILD {trigger}: {e.reason}") from None
    commands = parsed.stages[0].commands if parsed.stages else []
    if len(commands) != 1:
        raise BuildError(f"ONBUILD trigger is not one instruction: {trigger}")
    instr = commands[0]
    if isinstance(instr, (ins.Onbuild, ins.Maintainer)):
        raise BuildError(f"{instr.name.upper()} isn't allowed as an ONBUILD trigger")
    return instr
