import pytest

from berth.build import instructions as ins
from berth.build.errors import DockerfileError
from berth.build.parse import parse_dockerfile
from berth.build.stages import ArgScope, plan, platform_args, resolve_meta_args, unused_build_args

MULTI = """\
ARG GO=1.22
ARG BASE
FROM golang:${GO} AS build
ARG VERSION=dev
RUN <<EOF
echo $VERSION > /out
EOF

FROM build AS test
RUN go test

FROM busybox AS docs
COPY --from=alpine:3 /etc/os-release /

FROM ${BASE:-busybox}
COPY --from=build /out /out
COPY --from=2 /etc/os-release /x
"""


def test_meta_args_expand_in_from_and_build_args_override() -> None:
    df = parse_dockerfile(MULTI)
    p = plan(df)
    assert [n.base for n in p.nodes] == ["golang:1.22", "build", "busybox", "busybox"]
    p = plan(df, {"GO": "1.23", "BASE": "alpine"})
    assert [n.base for n in p.nodes] == ["golang:1.23", "build", "busybox", "alpine"]


def test_graph_edges_and_default_target() -> None:
    p = plan(parse_dockerfile(MULTI))
    assert [n.base_stage for n in p.nodes] == [None, 0, None, None]
    assert [n.stage_deps for n in p.nodes] == [(), (), (), (0, 2)]
    assert p.nodes[2].images == ("alpine:3",)
    assert p.target == 3
    assert p.order == (0, 2, 3)  # the unused `test` stage is skipped
    assert p.node("Docs").index == 2 and p.node("1").name == "test"
    with pytest.raises(KeyError):
        p.node("missing")


@pytest.mark.parametrize("target,order", [("build", (0,)), ("TEST", (0, 1)), ("docs", (2,))])
def test_target_builds_only_what_it_needs(target: str, order: tuple[int, ...]) -> None:
    assert plan(parse_dockerfile(MULTI), target=target).order == order


def test_unknown_target() -> None:
    with pytest.raises(DockerfileError, match='target stage "nope" could not be found'):
        plan(parse_dockerfile(MULTI), target="nope")


def test_from_sees_only_earlier_stages() -> None:
    df = parse_dockerfile("FROM busybox AS busybox\nRUN x\nFROM busybox\n")
    p = plan(df)
    assert [n.base_stage for n in p.nodes] == [None, 0]
    assert p.order == (0, 1)


def test_copy_from_a_later_stage_and_cycles() -> None:
    df = parse_dockerfile("FROM busybox AS a\nCOPY --from=b /x /x\nFROM busybox AS b\n")
    assert plan(df, target="a").order == (1, 0)
    df = parse_dockerfile("FROM busybox AS a\nCOPY --from=b /x /x\nFROM a AS b\n")
    with pytest.raises(DockerfileError, match="circular dependency detected on stage: b"):
        plan(df)


def test_copy_from_uses_stage_args_and_run_mount_from_is_a_dependency() -> None:
    df = parse_dockerfile("ARG SRC=build\nFROM busybox AS build\nFROM busybox\nARG SRC\nCOPY --from=$SRC /a /a\n"
                          "RUN --mount=from=build,target=/m ls /m\n")
    assert plan(df).nodes[1].stage_deps == (0,)


@pytest.mark.parametrize("text,message", [
    ("FROM busybox AS a\nFROM busybox AS A\n", 'duplicate stage name "a"'),
    ("FROM busybox\nCOPY --from=3 /a /b\n", "invalid stage index 3"),
    ("FROM busybox\nCOPY --from=-1 /a /b\n", "invalid stage index -1"),
    ("ARG B\nFROM $B\n", "base name ($B) should not be blank"),
    ("FROM ${B:?needed}\n", 'failed to process "${B:?needed}": B: needed'),
])
def test_plan_errors(text: str, message: str) -> None:
    with pytest.raises(DockerfileError) as info:
        plan(parse_dockerfile(text))
    assert info.value.reason == message
    assert info.value.line > 0


def test_platform_args_in_from() -> None:
    predefined = platform_args("linux/amd64", "linux/arm64/v8")
    assert predefined["TARGETARCH"] == "arm64" and predefined["TARGETVARIANT"] == "v8"
    assert predefined["BUILDOS"] == "linux" and predefined["BUILDVARIANT"] == ""
    df = parse_dockerfile("FROM --platform=$BUILDPLATFORM busybox AS b\nFROM img-${TARGETARCH}\n")
    p = plan(df, predefined=predefined)
    assert (p.nodes[0].platform, p.nodes[1].base) == ("linux/amd64", "img-arm64")


def test_meta_arg_defaults_see_earlier_meta_args() -> None:
    df = parse_dockerfile("ARG A=1\nARG B=${A}x\nARG C\nFROM busybox\n")
    assert resolve_meta_args(df, {}) == {"A": "1", "B": "1x"}
    assert resolve_meta_args(df, {"A": "9", "C": "c", "Z": "z"}) == {"A": "9", "B": "9x", "C": "c"}


def _scope(build_args: dict[str, str | None] | None = None) -> ArgScope:
    return ArgScope(build_args or {}, meta={"G": "glob", "V": "meta"}, env={"PATH": "/bin"})


def _arg(line: str) -> ins.Arg:
    instr = parse_dockerfile(f"FROM x\n{line}\n").stages[0].commands[0]
    assert isinstance(instr, ins.Arg)
    return instr


def _env(line: str) -> ins.Env:
    instr = parse_dockerfile(f"FROM x\n{line}\n").stages[0].commands[0]
    assert isinstance(instr, ins.Env)
    return instr


def test_stage_args_are_invisible_until_declared() -> None:
    scope = _scope({"V": "vv", "X": "x"})
    assert "G" not in scope.expansion_env() and "X" not in scope.expansion_env()
    declared = scope.declare(_arg("ARG G V X Y"))
    assert declared.args == (ins.ArgDecl("G", "glob"), ins.ArgDecl("V", "vv"), ins.ArgDecl("X", "x"),
                             ins.ArgDecl("Y"))
    assert scope.expansion_env() == {"G": "glob", "V": "vv", "X": "x", "PATH": "/bin"}


def test_arg_default_expands_and_build_arg_wins() -> None:
    scope = _scope({"B": "given"})
    scope.declare(_arg('ARG A="${PATH}:/x" B=${PATH}'))
    assert scope.expand("$A|$B") == "/bin:/x|given"


def test_env_always_wins_over_arg() -> None:
    scope = _scope()
    scope.set_env(_env("ENV A=env"))
    scope.declare(_arg("ARG A=arg"))
    assert scope.expand("$A") == "env"
    scope.declare(_arg("ARG C=arg"))
    scope.set_env(_env("ENV C=env"))
    assert scope.expand("$C") == "env"


def test_env_pairs_see_earlier_pairs_and_old_values() -> None:
    scope = _scope()
    env = scope.set_env(_env('ENV A=1 B=${A}2 PATH="$PATH:/x"'))
    assert [str(p) for p in env.pairs] == ["A=1", "B=12", "PATH=/bin:/x"]


def test_run_env_and_history_args_follow_dockerd() -> None:
    # Checked against dockerd 20.10: ENV A hides ARG A, declared proxy args are recorded,
    # undeclared ones only reach the RUN environment.
    scope = ArgScope({"V": "vv", "HTTP_PROXY": "hp", "https_proxy": "hs"}, meta={"G": "glob"})
    scope.set_env(_env("ENV A=env"))
    scope.declare(_arg("ARG A=arg"))
    scope.declare(_arg("ARG G"))
    scope.declare(_arg("ARG V"))
    scope.declare(_arg("ARG HTTP_PROXY"))
    assert scope.run_env() == {"A": "env", "G": "glob", "V": "vv", "HTTP_PROXY": "hp", "https_proxy": "hs"}
    assert scope.history_args() == ["G=glob", "HTTP_PROXY=hp", "V=vv"]


def test_history_args_none_and_empty() -> None:
    assert ArgScope({}, meta={}).history_args() is None
    assert ArgScope({"HTTP_PROXY": "p"}, meta={}).history_args() == []


def test_unused_build_args() -> None:
    df = parse_dockerfile("ARG A\nFROM busybox\nARG B\n")
    assert unused_build_args(df, ["A", "B", "C", "HTTP_PROXY", "no_proxy"]) == ["C"]
