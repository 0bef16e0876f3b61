"""Build args and the stage graph: what each FROM resolves to, which stages a target needs.

ARG scoping follows BuildKit (and dockerd's legacy builder, which agrees here):
- ARGs before the first FROM are global; only they (plus the predefined platform args) expand in
  FROM lines. A `--build-arg` overrides a declared global's default.
- Inside a stage an ARG is visible only after it is declared; `ARG NAME` without a default takes the
  `--build-arg` value, else the global of that name. ENV always wins over an ARG of the same name.
- The proxy args (HTTP_PROXY ...) reach RUN from `--build-arg` without a declaration, but are
  left out of the image history unless declared.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from berth.build import instructions as ins
from berth.build.errors import DockerfileError, ExpansionError
from berth.build.expand import Lexer
from berth.build.mounts import MountError, parse_mount
from berth.build.parse import Dockerfile

PROXY_ARGS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
              "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")
SCRATCH = "scratch"


def platform_args(build_platform: str, target_platform: str | None = None) -> dict[str, str]:
    """BUILDPLATFORM/TARGETPLATFORM and their OS/ARCH/VARIANT parts ("linux/arm64/v8")."""
    out: dict[str, str] = {}
    for prefix, value in (("BUILD", build_platform), ("TARGET", target_platform or build_platform)):
        os_, _, rest = value.partition("/")
        arch, _, variant = rest.partition("/")
        out |= {f"{prefix}PLATFORM": value, f"{prefix}OS": os_, f"{prefix}ARCH": arch,
                f"{prefix}VARIANT": variant}
    return out


def _located(instr: ins.Instruction, exc: ExpansionError | MountError) -> DockerfileError:
    return DockerfileError(str(exc), instr.line, 1, instr.end_line)


def resolve_meta_args(dockerfile: Dockerfile, build_args: Mapping[str, str | None],
                      predefined: Mapping[str, str] | None = None) -> dict[str, str]:
    """The global ARGs' values, for FROM lines and for stage ARGs that inherit them."""
    lex = Lexer(dockerfile.escape)
    env: dict[str, str] = dict(predefined or {})
    for instr in dockerfile.meta_args:
        for decl in instr.args:
            override = build_args.get(decl.key)
            try:
                if override is not None:
                    env[decl.key] = override
                elif decl.value is not None:
                    env[decl.key] = lex.process_word(decl.value, env)
            except ExpansionError as exc:
                raise _located(instr, exc) from None
    return env


@dataclass
class ArgScope:
    """The variables of one stage while its instructions are dispatched, in order.

    `env` starts as the base image's environment; `declare` and `set_env` follow ARG and ENV.
    """

    build_args: Mapping[str, str | None]
    meta: Mapping[str, str]
    env: dict[str, str] = field(default_factory=dict)
    args: dict[str, str | None] = field(default_factory=dict)
    escape: str = "\\"

    def expansion_env(self) -> dict[str, str]:
        declared = {k: v for k, v in self.args.items() if v is not None}
        return declared | self.env

    def expand(self, word: str) -> str:
        return Lexer(self.escape).process_word(word, self.expansion_env())

    def expand_words(self, word: str) -> list[str]:
        return Lexer(self.escape).process_words(word, self.expansion_env())

    def declare(self, instr: ins.Arg) -> ins.Arg:
        """Declare an ARG's names; returns it with keys expanded and values as resolved."""
        resolved = []
        for decl in instr.args:
            key = self.expand(decl.key)
            override = self.build_args.get(key)
            if override is not None:
                value: str | None = override
            elif decl.value is not None:
                value = self.expand(decl.value)
            else:
                value = self.meta.get(key)
            self.args[key] = value
            resolved.append(ins.ArgDecl(key, value))
        return ins.Arg(instr.code, instr.line, instr.end_line, tuple(resolved))

    def set_env(self, instr: ins.Env) -> ins.Env:
        """Apply an ENV; each pair sees the ones before it on the same line, as BuildKit does."""
        pairs = []
        for pair in instr.pairs:
            key, value = self.expand(pair.key), self.expand(pair.value)
            self.env[key] = value
            pairs.append(ins.KeyValue(key, value, pair.legacy_form))
        return ins.Env(instr.code, instr.line, instr.end_line, tuple(pairs))

    def run_env(self) -> dict[str, str]:
        """The environment of a RUN: proxies given as build args, declared ARGs, then ENV."""
        proxies = {k: v for k in PROXY_ARGS if (v := self.build_args.get(k)) is not None}
        return proxies | self.expansion_env()

    def history_args(self) -> list[str] | None:
        """The `K=V` list dockerd's legacy builder puts before a RUN's command in its history.

        None when no build arg applies (no `|N` prefix); an empty list gives `|0`, which dockerd
        writes when only undeclared proxy args were passed.
        """
        allowed: dict[str, tuple[str, bool]] = {}
        for key, value in self.args.items():
            if value is not None:
                allowed[key] = (value, True)
        for key in PROXY_ARGS:
            given = self.build_args.get(key)
            if given is not None and key not in allowed:
                allowed[key] = (given, False)
        allowed = {k: v for k, v in allowed.items() if k not in self.env}
        if not allowed:
            return None
        return sorted(f"{k}={v}" for k, (v, declared) in allowed.items() if declared)


def unused_build_args(dockerfile: Dockerfile, build_args: Iterable[str]) -> list[str]:
    """Build args no ARG declares (proxies excepted): dockerd warns `were not consumed`."""
    declared = {decl.key for instr in dockerfile.meta_args for decl in instr.args}
    for stage in dockerfile.stages:
        for instr in stage.commands:
            if isinstance(instr, ins.Arg):
                declared |= {decl.key for decl in instr.args}
    return sorted(k for k in build_args if k not in declared and k not in PROXY_ARGS)


@dataclass(frozen=True)
class StageNode:
    """One stage with its FROM resolved.

    base_stage is the index of the stage it builds on (FROM <earlier stage name>), else None and
    `base` names an image (or `scratch`). stage_deps are stages it copies or mounts from;
    images are images it copies or mounts from.
    """

    stage: ins.Stage
    base: str
    platform: str
    base_stage: int | None
    stage_deps: tuple[int, ...] = ()
    images: tuple[str, ...] = ()

    @property
    def index(self) -> int:
        return self.stage.index

    @property
    def name(self) -> str:
        return self.stage.name

    @property
    def deps(self) -> tuple[int, ...]:
        own = () if self.base_stage is None else (self.base_stage,)
        return tuple(sorted(set(own + self.stage_deps)))


@dataclass(frozen=True)
class BuildPlan:
    meta_args: dict[str, str]
    nodes: tuple[StageNode, ...]
    target: int
    order: tuple[int, ...]  # the stages the target needs, each after everything it depends on

    def node(self, ref: str) -> StageNode:
        index = find_stage(self.nodes, ref)
        if index < 0:
            raise KeyError(ref)
        return self.nodes[index]


def find_stage(nodes: Iterable[StageNode], ref: str) -> int:
    """A stage by (case-insensitive) name or index, or -1."""
    nodes = list(nodes)
    for node in nodes:
        if node.name and node.name == ref.lower():
            return node.index
    if ref.isdigit() and int(ref) < len(nodes):
        return int(ref)
    return -1


def plan(dockerfile: Dockerfile, build_args: Mapping[str, str | None] | None = None,
         target: str | None = None, predefined: Mapping[str, str] | None = None) -> BuildPlan:
    """Resolve every FROM and stage reference; pick the stages `target` needs, in build order."""
    build_args = build_args or {}
    if not dockerfile.stages:
        raise DockerfileError("no build stage in current context")
    meta = resolve_meta_args(dockerfile, build_args, predefined)
    lex = Lexer(dockerfile.escape)
    nodes: list[StageNode] = []
    by_name: dict[str, int] = {}
    for stage in dockerfile.stages:
        from_ = stage.from_
        try:
            base = lex.process_word(from_.base, meta)
            platform = lex.process_word(from_.platform, meta)
        except ExpansionError as exc:
            raise _located(from_, exc) from None
        if not base:
            raise DockerfileError("base name (" + from_.base + ") should not be blank", from_.line, 1)
        if stage.name and stage.name in by_name:
            raise DockerfileError(f'duplicate stage name "{stage.name}"', from_.line, 1)
        # FROM only sees stages defined above it, so `FROM busybox AS busybox` is the image.
        base_stage = by_name.get(base.lower())
        if stage.name:
            by_name[stage.name] = stage.index
        nodes.append(StageNode(stage, base, platform, base_stage))
    nodes = [_with_copy_deps(node, nodes, build_args, meta, dockerfile.escape) for node in nodes]
    target_index = len(nodes) - 1
    if target:
        target_index = find_stage(nodes, target) if not target.isdigit() else -1
        if target_index < 0:
            raise DockerfileError(f'target stage "{target}" could not be found')
    order = _build_order(nodes, target_index)
    return BuildPlan(meta, tuple(nodes), target_index, tuple(order))


def _with_copy_deps(node: StageNode, nodes: list[StageNode], build_args: Mapping[str, str | None],
                    meta: Mapping[str, str], escape: str) -> StageNode:
    """Stages and images a stage copies or mounts from (`COPY --from`, `RUN --mount=from=`)."""
    scope = ArgScope(build_args, meta, escape=escape)
    stage_deps: set[int] = set()
    images: list[str] = []
    for instr in node.stage.commands:
        refs: list[str] = []
        try:
            if isinstance(instr, ins.Arg):
                scope.declare(instr)
            elif isinstance(instr, ins.Env):
                scope.set_env(instr)
            elif isinstance(instr, ins.Copy) and instr.from_:
                refs.append(scope.expand(instr.from_))
            elif isinstance(instr, ins.Run):
                mounts = [parse_mount(spec, scope.expand) for spec in instr.mount_specs]
                refs += [m.from_ for m in mounts if m.from_]
        except (ExpansionError, MountError) as exc:
            raise _located(instr, exc) from None
        for ref in refs:
            index = _stage_ref(ref, nodes, instr)
            if index >= 0:
                stage_deps.add(index)
            elif ref not in images:
                images.append(ref)
    return StageNode(node.stage, node.base, node.platform, node.base_stage, tuple(sorted(stage_deps)),
                     tuple(images))


def _stage_ref(ref: str, nodes: list[StageNode], instr: ins.Instruction) -> int:
    try:
        number = int(ref, 10)
    except ValueError:
        return find_stage(nodes, ref)
    if not 0 <= number < len(nodes):
        raise DockerfileError(f"invalid stage index {number}", instr.line, 1, instr.end_line)
    return number


def _build_order(nodes: list[StageNode], target: int) -> list[int]:
    order: list[int] = []
    state: dict[int, str] = {}

    def visit(index: int) -> None:
        if state.get(index) == "done":
            return
        if state.get(index) == "visiting":
            name = nodes[index].name or str(index)
            raise DockerfileError(f"circular dependency detected on stage: {name}",
                                  nodes[index].stage.from_.line, 1)
        state[index] = "visiting"
        for dep in nodes[index].deps:
            visit(dep)
        state[index] = "done"
        order.append(index)

    visit(target)
    return order

