"""The COPY and ADD steps of a build: sources from the context, another stage or image, or a URL
(ADD), planned and hashed for the cache key, then written as one layer."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator

from berth.build import instructions as ins
from berth.build.expand import expand_heredoc
from berth.build.history import created_by_copy
from berth.build.stages import ArgScope, BuildPlan

from . import buildfetch, buildfs, buildview
from .buildcache import step_key
from .buildstep import BuildError, Message, StageState, StepContext


async def copy_step(step: StepContext, bp: BuildPlan, state: StageState, scope: ArgScope,
                    instr: ins.CopyBase) -> AsyncIterator[Message]:
    kind = "ADD" if isinstance(instr, ins.Add) else "COPY"
    expanded = step.expand(scope, instr)
    assert isinstance(expanded, ins.CopyBase)
    source_view = buildview.TreeView([step.ctx])
    what = "build context or excluded by .dockerignore"
    from_ = expanded.from_ if isinstance(expanded, ins.Copy) else ""
    if from_:
        source_view = step.source_view(bp, from_, kind)
        what = "the image or stage " + from_
    sources: list[tuple[buildview.TreeView, str]] = []
    is_add = isinstance(expanded, ins.Add)
    for src in expanded.sources:
        if is_add and buildfetch.is_url(src):
            where = os.path.join(step.work, "url-" + os.urandom(6).hex())
            checksum = expanded.checksum if isinstance(expanded, ins.Add) else ""
            try:
                name = await asyncio.to_thread(buildfetch.fetch, src, where, checksum)
            except buildview.CopyError as e:
                raise BuildError(e.message) from None
            sources.append((buildview.TreeView([where]), name))
        elif is_add and (src.startswith("git@") or src.endswith(".git")):
            raise BuildError(f"ADD failed: git sources ({src}) are not supported by berth's builder")
        else:
            sources.append((source_view, src))
    any_url = any(buildfetch.is_url(src) for src in expanded.sources)
    if isinstance(expanded, ins.Add) and expanded.checksum and not any_url:
        raise BuildError("checksum can't be specified for non-HTTP(S) sources")
    contents = [(c.path, (expand_heredoc(c.data, scope.expansion_env()) if c.expand else c.data)
                 .encode("utf-8", "surrogateescape")) for c in expanded.contents]
    image_view = step.tools.view(state.image)
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
    except buildview.CopyError as e:
        raise BuildError(e.message) from None
    created_by = created_by_copy(state.shell, kind, f"{cplan.kind}:{digest}", expanded.dest)
    flags = json.dumps([expanded.chown, expanded.chmod])
    key = step_key(state.id, kind, created_by + flags, digest)
    if await step.cached(state, key):
        yield step.out(" ---> Using cache\n")
    else:
        layer = await asyncio.to_thread(step.write, lambda f: buildfs.write_copy_layer(cplan, f))
        await step.commit(state, created_by, layer, key)
    assert state.image is not None
    yield step.out(f" ---> {state.image.id[7:19]}\n")
