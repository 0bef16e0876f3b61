"""The legacy builder (`POST /build`): runs a Dockerfile's steps and caches each one.

The frontend (`berth.build`) parses and plans; this module executes. Each step yields an image in
the image store: RUN runs a container through the ContainerService (create, start, wait, as an
API client would) and commits its writable layer; COPY/ADD writes a layer from the context or
another stage or image; every other instruction changes only the config (an `empty_layer` history
entry). A step whose (parent image, expanded instruction, copied content) was built before is
taken from the cache (`buildcache`). Progress is docker's legacy JSON stream.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import posixpath
import re
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from berth.api.routes.build import BuildOptions
from berth.build import instructions as ins
from berth.build.errors import DockerfileError, ExpansionError, StepFailed
from berth.build.expand import expand_heredoc
from berth.build.history import (
    DEFAULT_SHELL,
    created_by_copy,
    created_by_run,
    created_by_workdir,
    nop,
    nop_comment,
    resolve_cmdline,
    step_line,
)
from berth.build.mounts import Mount, MountError, parse_mount
from berth.build.parse import parse_dockerfile
from berth.build.stages import SCRATCH, ArgScope, BuildPlan, find_stage, plan, platform_args
from berth.common import reference
from berth.common.errors import BerthError, InvalidParameter, NotFound
from berth.common.ids import new_id
from berth.images.store import Image, ImageStore, NewLayer
from berth.runtime.etcfiles import MOUNT_POINTS as ETC_MOUNT_POINTS
from berth.runtime.logs import LogReader
from berth.snapshots.overlay import LayerStore
from berth.snapshots.tarapply import extract_archive, write_layer

from . import buildfetch, buildfs, buildmounts, buildsched
from .buildcache import BuildCache, step_key
from .containers import ContainerService
from .model import now_rfc3339

Message = dict[str, Any]
log = logging.getLogger("berth.builder")
DOCKER_VERSION = "berth"
PLATFORM = "linux/amd64"
_IMAGE_LINE = re.compile(r" ---> [0-9a-f]{12}\n")


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


class Builder:
    def __init__(self, svc: ContainerService, images: ImageStore, layers: LayerStore, cache: BuildCache,
                 tmp_dir: str, cache_mounts: str = "") -> None:
        self.svc = svc
        self.images = images
        self.layers = layers
        self.cache = cache
        self.tmp_dir = tmp_dir
        self.commit_lock = asyncio.Lock()
        # RUN --mount=type=cache directories: they must outlive builds and restarts (not in tmp)
        self.cache_mounts = cache_mounts or os.path.join(os.path.dirname(os.path.normpath(tmp_dir)), "build-mounts")
        os.makedirs(tmp_dir, exist_ok=True)

    async def build(self, opts: BuildOptions, body: AsyncIterator[bytes]) -> AsyncIterator[Message]:
        work = os.path.join(self.tmp_dir, "build-" + os.urandom(8).hex())
        os.makedirs(work)
        try:
            ctx = await self._receive_context(body, work)
            run = _Run(self, opts, ctx, work)
            async for msg in run.execute():
                if not opts.quiet:
                    yield msg
                elif "aux" in msg:  # -q: dockerd sends only the image ID, as a stream line
                    yield _stream(msg["aux"]["ID"] + "\n")
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

    def view(self, image: Image | None) -> buildfs.TreeView | None:
        if image is None:
            return None
        return buildfs.TreeView([self.layers.diff_dir(c) for c in reversed(image.chains)])


def _rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _stream(text: str) -> Message:
    return {"stream": text}


class _Run:
    """One build: its options, context, plan and the stages built so far."""

    def __init__(self, b: Builder, opts: BuildOptions, ctx: str, work: str) -> None:
        self.b = b
        self.opts = opts
        self.ctx = ctx
        self.work = work
        self.results: dict[int, StageState] = {}
        self.total = 0
        # --cache-from: only steps on the way to these images may be reused (none found: no cache)
        self.cache_sources: list[str] | None = None
        if opts.cache_from:
            self.cache_sources = []
            for ref in opts.cache_from:
                try:
                    self.cache_sources.append(b.images.get(ref).id)
                except (NotFound, InvalidParameter):
                    pass

    def out(self, text: str) -> Message:
        return _stream(text)

    async def execute(self) -> AsyncIterator[Message]:
        raw = buildfs.find_dockerfile(self.ctx, self.opts.dockerfile)
        await asyncio.to_thread(buildfs.apply_dockerignore, self.ctx, self.opts.dockerfile)
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
            yield self.out(step_line(step, self.total, meta))
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
        state = self.results[bp.order[-1]]
        if state.image is None:
            raise BuildError("No image was generated. Is your Dockerfile empty?")
        image = state.image
        yield {"aux": {"ID": image.id}}
        yield self.out(f"Successfully built {image.id[7:19]}\n")
        for t in self.opts.tags:
            self.b.images.tag(image.id, t)
            yield self.out(f"Successfully tagged {reference.familiar(reference.normalize(t))}\n")

    # --- stages ---------------------------------------------------------------------------------
    async def _stage(self, bp: BuildPlan, index: int, escape: str, step: int) -> AsyncIterator[Message]:
        node = bp.nodes[index]
        yield self.out(step_line(step, self.total, node.stage.from_))
        if node.base_stage is not None:
            base = self.results[node.base_stage]
            state = StageState(base.image, json.loads(json.dumps(base.config)), list(base.history),
                               list(base.diff_ids), list(base.chains), base.arch, base.os)
        elif node.base.lower() == SCRATCH:
            state = StageState(None, {}, [], [], [])
        else:
            try:
                img = self.b.images.get(node.base)
            except NotFound:
                raise BuildError(f"pull access denied for {node.base}: no such image in berth's store "
                                 "and no registry client yet (load or import it first)") from None
            state = self._state_of(img)
        triggers = [str(t) for t in state.config.get("OnBuild") or []]
        if state.image is not None and not triggers:
            yield self.out(f" ---> {state.image.id[7:19]}\n")
        env = dict(e.split("=", 1) for e in (state.config.get("Env") or []) if "=" in e)
        scope = ArgScope(self.opts.build_args, bp.meta_args, env=env, escape=escape)
        if triggers:
            # The base image's ONBUILD triggers run first, as if written under this FROM; the
            # new image does not inherit them.
            state.config["OnBuild"] = None
            yield self.out(f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}\n")
            for trigger in triggers:
                instr = _parse_trigger(trigger, escape)
                try:
                    async for msg in self._dispatch(bp, state, scope, instr):
                        if not _IMAGE_LINE.fullmatch(msg.get("stream", "")):  # dockerd: one at the end
                            yield msg
                except ExpansionError as e:
                    raise BuildError(f"ONBUILD {trigger}: {e}") from None
            assert state.image is not None
            yield self.out(f" ---> {state.image.id[7:19]}\n")
        for instr in node.stage.commands:
            step += 1
            yield self.out(step_line(step, self.total, instr))
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
        self.results[index] = state

    def _state_of(self, img: Image) -> StageState:
        cfg = img.config
        return StageState(img, json.loads(json.dumps(cfg.get("config") or {})), list(cfg.get("history") or []),
                          list(img.diff_ids), list(img.chains), cfg.get("architecture") or "amd64",
                          cfg.get("os") or "linux")

    async def _dispatch(self, bp: BuildPlan, state: StageState, scope: ArgScope,
                        instr: ins.Instruction) -> AsyncIterator[Message]:
        if isinstance(instr, ins.Run):
            async for msg in self._run(bp, state, scope, instr):
                yield msg
            return
        if isinstance(instr, ins.CopyBase):
            async for msg in self._copy(bp, state, scope, instr):
                yield msg
            return
        if isinstance(instr, ins.Workdir):
            async for msg in self._workdir(state, scope, instr):
                yield msg
            return
        expanded = self._expand(scope, instr)
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

    @staticmethod
    def _expand(scope: ArgScope, instr: ins.Instruction) -> ins.Instruction:
        if isinstance(instr, ins.Expose):
            return instr.expand(scope.expand_words)
        if isinstance(instr, (ins.Env, ins.Arg)):
            return instr  # ArgScope expands them while it applies them
        fn = getattr(instr, "expand", None)
        return fn(scope.expand) if fn is not None else instr  # type: ignore[no-any-return]

    async def _meta(self, state: StageState, instr: ins.Instruction, created_by: str,
                    quiet: bool = False) -> AsyncIterator[Message]:
        """A config-only step (dockerd shows a container it does not need to run for it)."""
        key = step_key(state.id, "meta", created_by, json.dumps(state.config, sort_keys=True))
        if await self._cached(state, key):
            if not quiet:
                yield self.out(" ---> Using cache\n")
        else:
            if not quiet:
                cid = new_id()[:12]
                yield self.out(f" ---> Running in {cid}\n")
                if self.opts.rm or self.opts.forcerm:
                    yield self.out(f"Removing intermediate container {cid}\n")
            await self._commit(state, created_by, None, key)
        if not quiet:
            assert state.image is not None
            yield self.out(f" ---> {state.image.id[7:19]}\n")

    async def _cached(self, state: StageState, key: str) -> bool:
        if self.opts.nocache:
            return False
        image_id = self.b.cache.get(key)
        if image_id is None:
            return False
        if self.cache_sources is not None and not any(
                self.b.cache.descends_from(src, image_id) for src in self.cache_sources):
            return False
        img = self.b.images.get(image_id)
        new = self._state_of(img)
        new.cmd_set = state.cmd_set
        state.__dict__.update(new.__dict__)
        return True

    async def _commit(self, state: StageState, created_by: str, layer: tuple[str, str] | None, key: str,
                      comment: str = "") -> None:
        created = now_rfc3339()
        entry: dict[str, Any] = {"created": created, "created_by": created_by}
        if comment:
            entry["comment"] = comment
        diff_ids = list(state.diff_ids)
        layers = [NewLayer(open=self._blob_opener(chain)) for chain in state.chains]
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
        async with self.b.commit_lock:  # parallel stages may add the same new layer at once
            img, _ = await asyncio.to_thread(self.b.images.add, data, layers, [])
        if layer is not None:
            os.unlink(layer[0])
        self.b.cache.put(key, img.id)
        if state.image is not None:
            self.b.images.set_parent(img.id, state.image.id)
        cmd_set = state.cmd_set
        state.__dict__.update(self._state_of(img).__dict__)
        state.cmd_set = cmd_set

    def _blob_opener(self, chain: str) -> Callable[[], BinaryIO]:
        def opener() -> BinaryIO:
            blob, _ = self.b.images.layer_blob(chain)
            return self.b.images.content.open(blob)
        return opener

    # --- WORKDIR --------------------------------------------------------------------------------
    async def _workdir(self, state: StageState, scope: ArgScope, instr: ins.Workdir) -> AsyncIterator[Message]:
        path = instr.expand(scope.expand).path
        workdir = posixpath.normpath(posixpath.join(state.workdir, path))
        state.config["WorkingDir"] = workdir
        created_by = created_by_workdir(state.shell, workdir)
        view = self.b.view(state.image)
        rel = workdir.lstrip("/")
        missing = bool(rel) and (view is None or view.lookup(rel)[1] is None)
        if not missing:
            async for msg in self._meta(state, instr, created_by):
                yield msg
            return
        key = step_key(state.id, "workdir", created_by, json.dumps(state.config, sort_keys=True))
        if await self._cached(state, key):
            yield self.out(" ---> Using cache\n")
        else:
            cid = new_id()[:12]
            yield self.out(f" ---> Running in {cid}\n")
            plan = buildfs.plan_dirs(workdir, view)
            layer = await asyncio.to_thread(self._write, lambda f: buildfs.write_copy_layer(plan, f))
            await self._commit(state, created_by, layer, key)
            yield self.out(f"Removing intermediate container {cid}\n")
        assert state.image is not None
        yield self.out(f" ---> {state.image.id[7:19]}\n")

    def _write(self, fn: Callable[[BinaryIO], str]) -> tuple[str, str]:
        path = os.path.join(self.work, "layer-" + os.urandom(6).hex())
        with open(path, "wb") as f:
            diff_id = fn(f)
        return path, diff_id

    # --- COPY / ADD -----------------------------------------------------------------------------
    def _source_view(self, bp: BuildPlan, ref: str, kind: str) -> buildfs.TreeView:
        """The files of a stage (built before this one: it is a dependency) or of an image."""
        index = find_stage(bp.nodes, ref)
        if index >= 0 and index in self.results:
            src_img = self.results[index].image
        else:
            try:
                src_img = self.b.images.get(ref)
            except NotFound:
                raise BuildError(f"{kind} failed: no stage or image named {ref}") from None
        view = self.b.view(src_img)
        return view if view is not None else buildfs.TreeView([])

    async def _copy(self, bp: BuildPlan, state: StageState, scope: ArgScope,
                    instr: ins.CopyBase) -> AsyncIterator[Message]:
        kind = "ADD" if isinstance(instr, ins.Add) else "COPY"
        expanded = self._expand(scope, instr)
        assert isinstance(expanded, ins.CopyBase)
        source_view = buildfs.TreeView([self.ctx])
        what = "build context or excluded by .dockerignore"
        from_ = expanded.from_ if isinstance(expanded, ins.Copy) else ""
        if from_:
            source_view = self._source_view(bp, from_, kind)
            what = "the image or stage " + from_
        sources: list[tuple[buildfs.TreeView, str]] = []
        is_add = isinstance(expanded, ins.Add)
        for src in expanded.sources:
            if is_add and buildfetch.is_url(src):
                where = os.path.join(self.work, "url-" + os.urandom(6).hex())
                checksum = expanded.checksum if isinstance(expanded, ins.Add) else ""
                try:
                    name = await asyncio.to_thread(buildfetch.fetch, src, where, checksum)
                except buildfs.CopyError as e:
                    raise BuildError(e.message) from None
                sources.append((buildfs.TreeView([where]), name))
            elif is_add and (src.startswith("git@") or src.endswith(".git")):
                raise BuildError(f"ADD failed: git sources ({src}) are not supported by berth's builder")
            else:
                sources.append((source_view, src))
        any_url = any(buildfetch.is_url(src) for src in expanded.sources)
        if isinstance(expanded, ins.Add) and expanded.checksum and not any_url:
            raise BuildError("checksum can't be specified for non-HTTP(S) sources")
        contents = [(c.path, (expand_heredoc(c.data, scope.expansion_env()) if c.expand else c.data)
                     .encode("utf-8", "surrogateescape")) for c in expanded.contents]
        image_view = self.b.view(state.image)
        # Downloaded files are never unpacked (dockerd's rule), local archives are.
        unpack = isinstance(expanded, ins.Add) and expanded.unpack is not False and not from_ and not any_url

        def prepare() -> tuple[buildfs.CopyPlan, str]:
            cplan = buildfs.plan_copy(sources, contents, expanded.dest,
                                      state.workdir, image_view, what, unpack)
            cplan.uid, cplan.gid = buildfs.resolve_chown(expanded.chown, image_view) if expanded.chown else (0, 0)
            buildfs.apply_chmod(cplan, expanded.chmod)
            return cplan, buildfs.copy_digest(cplan)

        try:
            cplan, digest = await asyncio.to_thread(prepare)
        except buildfs.CopyError as e:
            raise BuildError(e.message) from None
        created_by = created_by_copy(state.shell, kind, f"{cplan.kind}:{digest}", expanded.dest)
        flags = json.dumps([expanded.chown, expanded.chmod])
        key = step_key(state.id, kind, created_by + flags, digest)
        if await self._cached(state, key):
            yield self.out(" ---> Using cache\n")
        else:
            layer = await asyncio.to_thread(self._write, lambda f: buildfs.write_copy_layer(cplan, f))
            await self._commit(state, created_by, layer, key)
        assert state.image is not None
        yield self.out(f" ---> {state.image.id[7:19]}\n")

    # --- RUN ------------------------------------------------------------------------------------
    async def _run(self, bp: BuildPlan, state: StageState, scope: ArgScope,
                   instr: ins.Run) -> AsyncIterator[Message]:
        if state.image is None:
            raise BuildError("RUN needs a base image: this stage is FROM scratch with nothing to run")
        shell = state.shell
        argv = _run_argv(instr, shell)
        created_by = created_by_run(argv, scope.history_args())
        if instr.security == "insecure":
            raise BuildError("RUN --security=insecure is not allowed by berth's builder")
        try:
            mounts = [_rooted(parse_mount(spec, scope.expand), state.workdir) for spec in instr.mount_specs]
        except MountError as e:
            raise DockerfileError(str(e), instr.line, 1, instr.end_line) from None
        try:
            planned, mount_identity = await asyncio.to_thread(
                buildmounts.plan, mounts, buildfs.TreeView([self.ctx]), lambda ref: self._source_view(bp, ref, "RUN"))
        except buildfs.CopyError as e:
            raise BuildError(e.message) from None
        extra = json.dumps([mount_identity, instr.network]) if mounts or instr.network else ""
        key = step_key(state.id, "run", created_by, extra)
        if await self._cached(state, key):
            yield self.out(" ---> Using cache\n")
            yield self.out(f" ---> {state.image.id[7:19]}\n")
            return
        env = [f"{k}={v}" for k, v in scope.run_env().items()]
        host_config: dict[str, Any] = {}
        network = {"default": "", "sandbox": ""}.get(instr.network, instr.network) or self.opts.network_mode
        if network and network != "default":
            host_config["NetworkMode"] = network
        if self.opts.extra_hosts:
            host_config["ExtraHosts"] = list(self.opts.extra_hosts)
        # Mount points the image lacks are the runtime's, not the step's: keep them out of the layer.
        image_view = self.b.view(state.image)
        hidden = [p.mount.target for p in planned
                  if image_view is None or image_view.lookup(p.mount.target.lstrip("/"))[1] is None]
        if planned:
            host_config["Mounts"] = await asyncio.to_thread(buildmounts.host_mounts, planned, self.work,
                                                            self.b.cache_mounts)
        body = {"Image": state.image.id, "Entrypoint": argv, "Env": env, "WorkingDir": state.workdir,
                "User": state.config.get("User") or "", "HostConfig": host_config,
                "Labels": {}, "Volumes": {}}
        created = await self.b.svc.create(body, None)
        cid = created["Id"]
        c = self.b.svc.get(cid)
        yield self.out(f" ---> Running in {cid[:12]}\n")
        failed = True
        try:
            waiter = self.b.svc.wait(c, "next-exit")
            await self.b.svc.start(cid)
            async for rec in LogReader(self.b.svc.log_path(c)).follow(0, c.exited):
                text = rec.data.decode("utf-8", "replace")
                # dockerd's legacy builder shows stderr in red (docker-py's tests check it)
                yield self.out(f"\x1b[91m{text}\x1b[0m" if rec.stream == "stderr" else text)
            code = await waiter
            if code != 0:
                raise StepFailed(f"The command '{' '.join(argv)}' returned a non-zero code: {code}", code)
            layer = await asyncio.to_thread(self._container_layer, cid, c.top_chain, hidden)
            await self._commit(state, created_by, layer, key)
            failed = False
        except asyncio.CancelledError:
            # Another stage failed (or the client went away): stop this step's container too.
            await asyncio.shield(self.b.svc.remove(cid, force=True))
            raise
        finally:
            removed = False
            if self.opts.forcerm or (self.opts.rm and not failed):
                try:
                    await self.b.svc.remove(cid, force=True)
                    removed = True
                except BerthError:
                    pass
        if removed:
            yield self.out(f"Removing intermediate container {cid[:12]}\n")
        yield self.out(f" ---> {state.image.id[7:19]}\n")

    def _container_layer(self, cid: str, top_chain: str | None, hidden: list[str]) -> tuple[str, str] | None:
        points = [*ETC_MOUNT_POINTS, *hidden]
        if not self.b.layers.changes(cid, top_chain, points):
            return None
        exclude = [p.lstrip("/") for p in points]
        return self._write(lambda f: write_layer(self.b.layers.upper_dir(cid), f, exclude))


def _rooted(m: Mount, workdir: str) -> Mount:
    """A mount's target relative to the working directory, as BuildKit takes it."""
    return dataclasses.replace(m, target=posixpath.normpath(posixpath.join(workdir, m.target)))


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


def _run_argv(instr: ins.Run, shell: list[str]) -> list[str]:
    """The argv of a RUN; heredocs become the shell's own here-documents (BuildKit runs a lone
    `RUN <<EOF` body as the script itself)."""
    if not instr.files or not instr.prepend_shell:
        return resolve_cmdline(instr.cmd, instr.prepend_shell, shell)
    line = " ".join(instr.cmd)
    first = instr.files[0]
    if len(instr.files) == 1 and line.strip() in (f"<<{first.name}", f"<<-{first.name}",
                                                  f"<<'{first.name}'", f'<<"{first.name}"'):
        return [*shell, first.data]
    script = line
    for doc in instr.files:
        script += "\n" + doc.content + doc.name
    return [*shell, script]


