"""Typed Dockerfile instructions, one frozen dataclass per instruction.

Values are as written (before `${VAR}` expansion). Instructions whose arguments BuildKit expands
have an `expand(fn)` returning a copy with those arguments expanded, so the rule "which
instruction expands what" lives here, once: ENV/LABEL keys and values, ARG names and defaults,
WORKDIR, USER, STOPSIGNAL, VOLUME, COPY/ADD sources, destination, --from/--chown/--chmod/
--checksum. FROM is expanded with the global ARGs by `stages`; EXPOSE splits words (see
`Expose.expand`); RUN/CMD/ENTRYPOINT/SHELL/HEALTHCHECK/MAINTAINER/ONBUILD are never expanded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TypeVar

from berth.build.dockerfile import Heredoc
from berth.build.mounts import Mount

Expander = Callable[[str], str]
WordsExpander = Callable[[str], list[str]]
C = TypeVar("C", bound="CopyBase")


@dataclass(frozen=True)
class Instruction:
    """Common to all: `code` is the instruction as written (continuations joined, trimmed).

    code is what dockerd's legacy builder prints as `Step N/M : <code>`.
    """

    code: str
    line: int
    end_line: int

    @property
    def name(self) -> str:
        return type(self).__name__.lower()


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: str
    legacy_form: bool = False  # `ENV K V` rather than `ENV K=V`

    def __str__(self) -> str:
        return f"{self.key}={self.value}"


@dataclass(frozen=True)
class ArgDecl:
    key: str
    value: str | None = None  # None: declared without a default

    def __str__(self) -> str:
        return self.key if self.value is None else f"{self.key}={self.value}"


@dataclass(frozen=True)
class SourceContent:
    """A heredoc source of COPY/ADD: a file named `path` holding `data`."""

    path: str
    data: str
    expand: bool


@dataclass(frozen=True)
class From(Instruction):
    base: str = ""
    stage_name: str = ""  # lower-cased, "" when there is no AS
    platform: str = ""


@dataclass(frozen=True)
class ShellDependent(Instruction):
    """RUN/CMD/ENTRYPOINT: exec form (`prepend_shell` false) or one shell string."""

    cmd: tuple[str, ...] = ()
    prepend_shell: bool = True


@dataclass(frozen=True)
class Run(ShellDependent):
    files: tuple[Heredoc, ...] = ()
    mounts: tuple[Mount, ...] = ()
    mount_specs: tuple[str, ...] = ()  # the --mount values as written, expanded at dispatch
    network: str = ""
    security: str = ""


@dataclass(frozen=True)
class Cmd(ShellDependent):
    pass


@dataclass(frozen=True)
class Entrypoint(ShellDependent):
    """`ENTRYPOINT []` leaves cmd empty and reset true: the entrypoint is cleared."""

    reset: bool = False


@dataclass(frozen=True)
class Shell(Instruction):
    shell: tuple[str, ...] = ()


@dataclass(frozen=True)
class Env(Instruction):
    pairs: tuple[KeyValue, ...] = ()

    def expand(self, fn: Expander) -> Env:
        return replace(self, pairs=_expand_pairs(self.pairs, fn))


@dataclass(frozen=True)
class Label(Instruction):
    pairs: tuple[KeyValue, ...] = ()

    def expand(self, fn: Expander) -> Label:
        return replace(self, pairs=_expand_pairs(self.pairs, fn))


@dataclass(frozen=True)
class Arg(Instruction):
    args: tuple[ArgDecl, ...] = ()

    def expand(self, fn: Expander) -> Arg:
        return replace(self, args=tuple(
            ArgDecl(fn(a.key), None if a.value is None else fn(a.value)) for a in self.args))


@dataclass(frozen=True)
class Expose(Instruction):
    ports: tuple[str, ...] = ()  # sorted as written, as BuildKit sorts them

    def expand(self, fn: WordsExpander) -> Expose:
        """EXPOSE splits each expanded word on whitespace (`EXPOSE $PORTS` may give many)."""
        return replace(self, ports=tuple(p for word in self.ports for p in fn(word)))


@dataclass(frozen=True)
class CopyBase(Instruction):
    sources: tuple[str, ...] = ()
    contents: tuple[SourceContent, ...] = ()
    dest: str = ""
    chown: str = ""
    chmod: str = ""
    link: bool = False
    excludes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Copy(CopyBase):
    from_: str = ""
    parents: bool = False

    def expand(self, fn: Expander) -> Copy:
        return replace(_expand_copy(self, fn), from_=fn(self.from_))


@dataclass(frozen=True)
class Add(CopyBase):
    keep_git_dir: bool = False
    checksum: str = ""
    unpack: bool | None = None

    def expand(self, fn: Expander) -> Add:
        return replace(_expand_copy(self, fn), checksum=fn(self.checksum))


@dataclass(frozen=True)
class Workdir(Instruction):
    path: str = ""

    def expand(self, fn: Expander) -> Workdir:
        return replace(self, path=fn(self.path))


@dataclass(frozen=True)
class User(Instruction):
    user: str = ""

    def expand(self, fn: Expander) -> User:
        return replace(self, user=fn(self.user))


@dataclass(frozen=True)
class Volume(Instruction):
    volumes: tuple[str, ...] = ()

    def expand(self, fn: Expander) -> Volume:
        return replace(self, volumes=tuple(fn(v) for v in self.volumes))


@dataclass(frozen=True)
class StopSignal(Instruction):
    signal: str = ""

    def expand(self, fn: Expander) -> StopSignal:
        return replace(self, signal=fn(self.signal))


@dataclass(frozen=True)
class Healthcheck(Instruction):
    """test is docker's HealthConfig.Test: ["NONE"], ["CMD", ...] or ["CMD-SHELL", cmd].

    Durations are nanoseconds; 0 means "inherit the default".
    """

    test: tuple[str, ...] = ()
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0


@dataclass(frozen=True)
class Onbuild(Instruction):
    expression: str = ""  # the trigger as written, without `ONBUILD `
    trigger: str = ""  # its instruction keyword, upper-case


@dataclass(frozen=True)
class Maintainer(Instruction):
    maintainer: str = ""


@dataclass
class Stage:
    """A FROM and the instructions under it, up to the next FROM."""

    index: int
    from_: From
    commands: list[Instruction] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.from_.stage_name


def _expand_pairs(pairs: tuple[KeyValue, ...], fn: Expander) -> tuple[KeyValue, ...]:
    return tuple(KeyValue(fn(p.key), fn(p.value), p.legacy_form) for p in pairs)


def _expand_copy(c: C, fn: Expander) -> C:
    return replace(c, sources=tuple(fn(s) for s in c.sources), dest=fn(c.dest), chown=fn(c.chown),
                   chmod=fn(c.chmod))
