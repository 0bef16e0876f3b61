"""The RUN step of a build: a container from the stage's image, created, started and waited for
through the ContainerService as an API client would, with the step's RUN --mount mounts; its
writable layer, less the runtime's mount points, becomes the step's layer."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import posixpath
from collections.abc import AsyncIterator
from typing import Any

from berth.build import instructions as ins
from berth.build.errors import DockerfileError, StepFailed
from berth.build.history import created_by_run, resolve_cmdline
from berth.build.mounts import Mount, MountError, parse_mount
from berth.build.stages import ArgScope, BuildPlan
from berth.common.errors import BerthError
from berth.runtime.etcfiles import INIT_FILES
from berth.runtime.logs import LogReader
from berth.snapshots.tarwrite import write_layer

from . import buildmounts, buildview
from .buildcache import step_key
from .buildstep import BuildError, Message, StageState, StepContext


async def run_step(step: StepContext, bp: BuildPlan, state: StageState, scope: ArgScope,
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
            buildmounts.plan, mounts, buildview.TreeView([step.ctx]), lambda ref: step.source_view(bp, ref, "RUN"))
    except buildview.CopyError as e:
        raise BuildError(e.message) from None
    extra = json.dumps([mount_identity, instr.network]) if mounts or instr.network else ""
    key = step_key(state.id, "run", created_by, extra)
    if await step.cached(state, key):
        yield step.out(" ---> Using cache\n")
        yield step.out(f" ---> {state.image.id[7:19]}\n")
        return
    env = [f"{k}={v}" for k, v in scope.run_env().items()]
    host_config: dict[str, Any] = {}
    network = {"default": "", "sandbox": ""}.get(instr.network, instr.network) or step.opts.network_mode
    if network and network != "default":
        host_config["NetworkMode"] = network
    if step.opts.extra_hosts:
        host_config["ExtraHosts"] = list(step.opts.extra_hosts)
    # Mount points the image lacks are the runtime's, not the step's: keep them out of the layer.
    image_view = step.tools.view(state.image)
    hidden = [p.mount.target for p in planned
              if image_view is None or image_view.lookup(p.mount.target.lstrip("/"))[1] is None]
    if planned:
        host_config["Mounts"] = await asyncio.to_thread(buildmounts.host_mounts, planned, step.work,
                                                        step.tools.cache_mounts)
    body = {"Image": state.image.id, "Entrypoint": argv, "Env": env, "WorkingDir": state.workdir,
            "User": state.config.get("User") or "", "HostConfig": host_config,
            "Labels": {}, "Volumes": {}}
    created = await step.tools.svc.create(body, None)
    cid = created["Id"]
    c = step.tools.svc.get(cid)
    yield step.out(f" ---> Running in {cid[:12]}\n")
    failed = True
    try:
        waiter = step.tools.svc.wait(c, "next-exit")
        await step.tools.svc.start(cid)
        async for rec in LogReader(step.tools.svc.log_path(c)).follow(0, c.exited):
            text = rec.data.decode("utf-8", "replace")
            # dockerd's legacy builder shows stderr in red (docker-py's tests check it)
            yield step.out(f"\x1b[91m{text}\x1b[0m" if rec.stream == "stderr" else text)
        code = await waiter
        if code != 0:
            raise StepFailed(f"The command '{' '.join(argv)}' returned a non-zero code: {code}", code)
        layer = await asyncio.to_thread(_container_layer, step, cid, c.top_chain, hidden)
        await step.commit(state, created_by, layer, key)
        failed = False
    except asyncio.CancelledError:
        # Another stage failed (or the client went away): stop this step's container too.
        await asyncio.shield(step.tools.svc.remove(cid, force=True))
        raise
    finally:
        removed = False
        if step.opts.forcerm or (step.opts.rm and not failed):
            try:
                await step.tools.svc.remove(cid, force=True)
                removed = True
            except BerthError:
                pass
    if removed:
        yield step.out(f"Removing intermediate container {cid[:12]}\n")
    yield step.out(f" ---> {state.image.id[7:19]}\n")


def _container_layer(step: StepContext, cid: str, top_chain: str | None,
                     hidden: list[str]) -> tuple[str, str] | None:
    points = [*INIT_FILES, *hidden]
    if not step.tools.layers.changes(cid, top_chain, points):
        return None
    exclude = [p.lstrip("/") for p in points]
    return step.write(lambda f: write_layer(step.tools.layers.upper_dir(cid), f, exclude))


def _rooted(m: Mount, workdir: str) -> Mount:
    """A mount's target relative to the working directory, as BuildKit takes it."""
    return dataclasses.replace(m, target=posixpath.normpath(posixpath.join(workdir, m.target)))


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
