"""Nodes -> typed instructions -> a `Dockerfile` (global ARGs and stages), with BuildKit's checks.

`parse_dockerfile(text)` is the entry point; every error is a DockerfileError naming the line
and column.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from berth.build import instructions as ins
from berth.build.dockerfile import Directives, Node, ParseWarning, parse, parse_heredoc
from berth.build.errors import DockerfileError
from berth.build.flags import BuilderFlags, FlagError, parse_go_duration, with_suggestion
from berth.build.mounts import MountError, parse_mount

_STAGE_NAME = re.compile(r"^[a-z][a-z0-9-_.]*$")
_MIN_HEALTH_DURATION = 1_000_000  # 1ms, docker's container.MinimumDuration
INSTRUCTIONS = ("add", "arg", "cmd", "copy", "entrypoint", "env", "expose", "from", "healthcheck",
                "label", "maintainer", "onbuild", "run", "shell", "stopsignal", "user", "volume",
                "workdir")


@dataclass
class Dockerfile:
    meta_args: list[ins.Arg]
    stages: list[ins.Stage]
    directives: Directives = field(default_factory=Directives)
    warnings: list[ParseWarning] = field(default_factory=list)

    @property
    def escape(self) -> str:
        return self.directives.escape


def parse_dockerfile(data: bytes | str) -> Dockerfile:
    result = parse(data)
    meta_args: list[ins.Arg] = []
    stages: list[ins.Stage] = []
    warnings = list(result.warnings)
    for node in result.nodes:
        instruction = parse_instruction(node)
        if isinstance(instruction, ins.From):
            stages.append(ins.Stage(len(stages), instruction))
        elif not stages and isinstance(instruction, ins.Arg):
            meta_args.append(instruction)
        elif not stages:
            raise node.error("no build stage in current context")
        else:
            stages[-1].commands.append(instruction)
        if isinstance(instruction, (ins.Env, ins.Label)) and any(p.legacy_form for p in instruction.pairs):
            warnings.append(ParseWarning(
                "LegacyKeyValueFormat",
                f'"{node.keyword.upper()} key=value" should be used instead of legacy '
                f'"{node.keyword.upper()} key value" format', node.line))
        if isinstance(instruction, ins.Maintainer):
            warnings.append(ParseWarning("MaintainerDeprecated",
                                         "Maintainer instruction is deprecated in favor of using label",
                                         node.line))
    return Dockerfile(meta_args, stages, result.directives, warnings)


def parse_instruction(node: Node) -> ins.Instruction:
    parser = _PARSERS.get(node.name)
    if parser is None:
        raise node.error(with_suggestion(f"unknown instruction: {node.keyword}", node.keyword, INSTRUCTIONS))
    flags = BuilderFlags(node.flags)
    try:
        return parser(node, flags)
    except FlagError as exc:
        at = node.flag_columns[exc.index] if 0 <= exc.index < len(node.flag_columns) else None
        raise node.error(exc.message, at) from None
    except (MountError, ValueError) as exc:
        raise node.error(str(exc)) from None
    except DockerfileError as exc:
        raise exc.located(node.line, node.column, node.end_line) from None


def parse_trigger(expression: str, escape: str = "\\") -> ins.Instruction:
    """An ONBUILD trigger, parsed when a child image's FROM runs it."""
    result = parse(f"# escape={escape}\n{expression}" if escape != "\\" else expression)
    return parse_instruction(result.nodes[0])


def _base(node: Node) -> tuple[str, int, int]:
    """code, line, end_line: the fields every instruction starts with."""
    return node.original.strip(), node.line, node.end_line


def _no_flags(flags: BuilderFlags) -> None:
    flags.parse()


def _exactly_one(node: Node, flags: BuilderFlags) -> str:
    if len(node.args) != 1:
        raise node.error(f"{node.keyword.upper()} requires exactly one argument")
    flags.parse()
    return node.args[0]


def _cmdline(node: Node, args: list[str] | None = None) -> tuple[tuple[str, ...], bool]:
    args = node.args if args is None else args
    if not args:
        return (), not node.json
    if node.json:
        return tuple(args), False
    return (" ".join(args),), True


def _from(node: Node, flags: BuilderFlags) -> ins.From:
    args = node.args
    stage_name = ""
    if len(args) == 3 and args[1].lower() == "as":
        stage_name = args[2].lower()
        if not _STAGE_NAME.match(stage_name):
            raise node.error(f'invalid name for build stage: "{args[2]}", name can\'t start with a number '
                             "or contain symbols")
    elif len(args) != 1:
        raise node.error("FROM requires either one or three arguments")
    flags.add_string("platform")
    flags.parse()
    return ins.From(*_base(node), base=args[0], stage_name=stage_name,
                    platform=flags.string("platform"))


def _run(node: Node, flags: BuilderFlags) -> ins.Run:
    flags.add_strings("mount")
    flags.add_string("network")
    flags.add_string("security")
    flags.parse()
    network, security = flags.string("network"), flags.string("security")
    if network and network not in ("default", "none", "host"):
        raise node.error(f'unsupported network mode "{network}"')
    if security and security not in ("sandbox", "insecure"):
        raise node.error(f'unsupported security mode "{security}"')
    specs = tuple(flags.strings("mount"))
    mounts = tuple(parse_mount(spec) for spec in specs)
    cmd, shell = _cmdline(node)
    return ins.Run(*_base(node), cmd=cmd, prepend_shell=shell,
                   files=tuple(node.heredocs), mounts=mounts, mount_specs=specs, network=network,
                   security=security)


def _cmd(node: Node, flags: BuilderFlags) -> ins.Cmd:
    flags.parse()
    cmd, shell = _cmdline(node)
    return ins.Cmd(*_base(node), cmd=cmd, prepend_shell=shell)


def _entrypoint(node: Node, flags: BuilderFlags) -> ins.Entrypoint:
    flags.parse()
    cmd, shell = _cmdline(node)
    return ins.Entrypoint(*_base(node), cmd=cmd, prepend_shell=shell,
                          reset=not cmd)


def _shell(node: Node, flags: BuilderFlags) -> ins.Shell:
    flags.parse()
    if not node.args:
        raise node.error("SHELL requires at least one argument")
    if not node.json:
        raise node.error("SHELL requires the arguments to be in JSON form")
    return ins.Shell(*_base(node), shell=tuple(node.args))


def _pairs(node: Node, flags: BuilderFlags) -> tuple[ins.KeyValue, ...]:
    flags.parse()
    keyword = node.keyword.upper()
    if not node.args:
        raise node.error(f"{keyword} requires at least one argument")
    pairs = []
    for i in range(0, len(node.args), 3):
        key, value, sep = node.args[i:i + 3]
        if not key:
            raise node.error(f"{keyword} names can not be blank")
        pairs.append(ins.KeyValue(key, value, legacy_form=sep == ""))
    return tuple(pairs)


def _env(node: Node, flags: BuilderFlags) -> ins.Env:
    return ins.Env(*_base(node), pairs=_pairs(node, flags))


def _label(node: Node, flags: BuilderFlags) -> ins.Label:
    return ins.Label(*_base(node), pairs=_pairs(node, flags))


def _arg(node: Node, flags: BuilderFlags) -> ins.Arg:
    if not node.args:
        raise node.error("ARG requires at least one argument")
    flags.parse()
    decls = []
    for word in node.args:
        key, has_value, value = word.partition("=")
        decls.append(ins.ArgDecl(key, value if has_value else None))
    return ins.Arg(*_base(node), args=tuple(decls))


def _expose(node: Node, flags: BuilderFlags) -> ins.Expose:
    if not node.args:
        raise node.error("EXPOSE requires at least one argument")
    flags.parse()
    return ins.Expose(*_base(node), ports=tuple(sorted(node.args)))


def _sources_and_dest(node: Node, keyword: str) -> tuple[tuple[str, ...], tuple[ins.SourceContent, ...], str]:
    """Paths, heredoc bodies and the destination of COPY/ADD."""
    if len(node.args) < 2:
        raise node.error(f"{keyword} requires at least two arguments, but only one was provided. "
                         "Destination could not be determined")
    *srcs, dest = node.args
    if not node.json and parse_heredoc(dest) is not None:
        raise node.error(f"{keyword} cannot accept a heredoc as a destination")
    bodies = {doc.name: doc for doc in node.heredocs}
    sources: list[str] = []
    contents: list[ins.SourceContent] = []
    for src in srcs:
        marker = parse_heredoc(src) if not node.json else None
        if marker is None:
            sources.append(src)
            continue
        body = bodies.get(marker.name)
        data = body.data if body is not None else ""
        contents.append(ins.SourceContent(marker.name, data, marker.expand))
    return tuple(sources), tuple(contents), dest


def _copy(node: Node, flags: BuilderFlags) -> ins.Copy:
    sources, contents, dest = _sources_and_dest(node, "COPY")
    for name in ("chown", "from", "chmod"):
        flags.add_string(name)
    flags.add_bool("link")
    flags.add_bool("parents")
    flags.add_strings("exclude")
    flags.parse()
    return ins.Copy(*_base(node), sources=sources, contents=contents, dest=dest, from_=flags.string("from"),
                    chown=flags.string("chown"), chmod=flags.string("chmod"), link=flags.bool("link"),
                    parents=flags.bool("parents"), excludes=tuple(flags.strings("exclude")))


def _add(node: Node, flags: BuilderFlags) -> ins.Add:
    sources, contents, dest = _sources_and_dest(node, "ADD")
    for name in ("chown", "chmod", "checksum"):
        flags.add_string(name)
    flags.add_bool("link")
    flags.add_bool("keep-git-dir")
    flags.add_string("unpack")
    flags.add_strings("exclude")
    flags.parse()
    unpack = flags.string("unpack")
    if unpack.lower() not in ("", "true", "false"):
        raise node.error(f"expecting boolean value for flag unpack, not: {unpack}")
    return ins.Add(*_base(node), sources=sources, contents=contents, dest=dest, chown=flags.string("chown"),
                   chmod=flags.string("chmod"), link=flags.bool("link"), keep_git_dir=flags.bool("keep-git-dir"),
                   checksum=flags.string("checksum"), excludes=tuple(flags.strings("exclude")),
                   unpack=None if not unpack else unpack.lower() == "true")


def _workdir(node: Node, flags: BuilderFlags) -> ins.Workdir:
    return ins.Workdir(*_base(node), path=_exactly_one(node, flags))


def _user(node: Node, flags: BuilderFlags) -> ins.User:
    return ins.User(*_base(node), user=_exactly_one(node, flags))


def _stopsignal(node: Node, flags: BuilderFlags) -> ins.StopSignal:
    return ins.StopSignal(*_base(node), signal=_exactly_one(node, flags))


def _maintainer(node: Node, flags: BuilderFlags) -> ins.Maintainer:
    return ins.Maintainer(*_base(node), maintainer=_exactly_one(node, flags))


def _volume(node: Node, flags: BuilderFlags) -> ins.Volume:
    flags.parse()
    if not node.args:
        raise node.error("VOLUME requires at least one argument")
    volumes = []
    for volume in node.args:
        if not volume.strip():
            raise node.error("VOLUME specified can not be an empty string")
        volumes.append(volume.strip())
    return ins.Volume(*_base(node), volumes=tuple(volumes))


def _healthcheck(node: Node, flags: BuilderFlags) -> ins.Healthcheck:
    if not node.args:
        raise node.error("HEALTHCHECK requires at least one argument")
    kind, args = node.args[0].upper(), node.args[1:]
    if kind == "NONE":
        if args:
            raise node.error("HEALTHCHECK NONE takes no arguments")
        return ins.Healthcheck(*_base(node), test=("NONE",))
    names = ("interval", "timeout", "start-period", "start-interval")
    for name in (*names, "retries"):
        flags.add_string(name)
    flags.parse()
    if kind != "CMD":
        raise node.error(f'Unknown type "{node.args[0].upper()}" in HEALTHCHECK (try CMD)')
    cmd, shell = _cmdline(node, args)
    if not cmd:
        raise node.error("Missing command after HEALTHCHECK CMD")
    durations = [_health_duration(name, flags.string(name)) for name in names]
    retries = 0
    if flags.string("retries"):
        try:
            retries = int(flags.string("retries"), 10)
        except ValueError:
            raise node.error(f'strconv.ParseInt: parsing "{flags.string("retries")}": invalid syntax') from None
        if retries < 0:
            raise node.error(f"--retries cannot be negative ({retries})")
    test = ("CMD-SHELL" if shell else "CMD", *cmd)
    return ins.Healthcheck(*_base(node), test=test, interval=durations[0],
                           timeout=durations[1], start_period=durations[2], start_interval=durations[3],
                           retries=retries)


def _health_duration(name: str, value: str) -> int:
    if not value:
        return 0
    ns = parse_go_duration(value)
    if 0 < ns < _MIN_HEALTH_DURATION or ns < 0:
        raise ValueError(f'Interval "{name}" cannot be less than 1ms')
    return ns


def _onbuild(node: Node, flags: BuilderFlags) -> ins.Onbuild:
    if node.trigger is None:
        raise node.error("ONBUILD requires at least one argument")
    flags.parse()
    trigger = node.trigger.keyword.upper()
    if trigger == "ONBUILD":
        raise node.error("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger in ("MAINTAINER", "FROM"):
        raise node.error(f"{trigger} isn't allowed as an ONBUILD trigger")
    if node.trigger.name not in _PARSERS:
        # BuildKit only notices when the trigger runs; failing now names the right file and line.
        parse_instruction(node.trigger)
    expression = re.sub(r"(?i)^\s*ONBUILD\s*", "", node.original, count=1)
    return ins.Onbuild(*_base(node), expression=expression, trigger=trigger)


_PARSERS: dict[str, Callable[[Node, BuilderFlags], ins.Instruction]] = {
    "add": _add, "arg": _arg, "cmd": _cmd, "copy": _copy, "entrypoint": _entrypoint, "env": _env,
    "expose": _expose, "from": _from, "healthcheck": _healthcheck, "label": _label,
    "maintainer": _maintainer, "onbuild": _onbuild, "run": _run, "shell": _shell,
    "stopsignal": _stopsignal, "user": _user, "volume": _volume, "workdir": _workdir,
}
