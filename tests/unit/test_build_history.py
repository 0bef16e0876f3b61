"""created_by and Step text, with expected strings taken from dockerd 20.10's legacy builder."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from berth.build import instructions as ins
from berth.build.flags import format_go_duration, parse_go_duration
from berth.build.history import (
    created_by_copy,
    created_by_run,
    created_by_workdir,
    go_quote,
    go_quote_rune,
    nop,
    nop_comment,
    resolve_cmdline,
    step_count,
    step_line,
)
from berth.build.parse import parse_dockerfile
from berth.build.stages import ArgScope
from berth.build.values import exposed_ports, parse_signal, resolve_workdir, run_command
from berth.common.errors import InvalidParameter

PROBE = '''\
ARG BASE=busybox
FROM $BASE AS first
ARG A=1
ARG B
ENV E="x y" \\
    # a comment inside
    F=2
LABEL l1=v1 "l 2"="v 2"
EXPOSE 80 443/udp 8000-8001
WORKDIR sub
USER nobody:nogroup
VOLUME /data ["/x"]
VOLUME ["/y", "/z"]
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5m --timeout=3s --retries=3 CMD true
RUN echo $A $B > /tmp/f
RUN ["echo", "hi"]
SHELL ["/bin/sh", "-ec"]
CMD ["sh"]
CMD echo "x"
ENTRYPOINT ["/bin/echo"]
ONBUILD RUN echo onbuild
MAINTAINER me <me@x>
'''

# `docker history --no-trunc` of PROBE built with --build-arg B=bee, oldest first.
DOCKERD = [
    "/bin/sh -c #(nop)  ARG A=1",
    "/bin/sh -c #(nop)  ARG B",
    "/bin/sh -c #(nop)  ENV E=x y F=2",
    "/bin/sh -c #(nop)  LABEL l1=v1 l 2=v 2",
    "/bin/sh -c #(nop)  EXPOSE 443/udp 80 8000-8001",
    "/bin/sh -c #(nop) WORKDIR /sub",
    "/bin/sh -c #(nop)  USER nobody:nogroup",
    "/bin/sh -c #(nop)  VOLUME [/data [/x]]",
    "/bin/sh -c #(nop)  VOLUME [/y /z]",
    "/bin/sh -c #(nop)  STOPSIGNAL SIGTERM",
    """/bin/sh -c #(nop)  HEALTHCHECK &{["CMD-SHELL" "true"] "5m0s" "3s" "0s" '\\x03'}""",
    "|2 A=1 B=bee /bin/sh -c echo $A $B > /tmp/f",
    "|2 A=1 B=bee echo hi",
    "/bin/sh -ec #(nop)  SHELL [/bin/sh -ec]",
    '/bin/sh -ec #(nop)  CMD ["sh"]',
    '/bin/sh -ec #(nop)  CMD ["/bin/sh" "-ec" "echo \\"x\\""]',
    '/bin/sh -ec #(nop)  ENTRYPOINT ["/bin/echo"]',
    "/bin/sh -ec #(nop)  ONBUILD RUN echo onbuild",
    "/bin/sh -ec #(nop)  MAINTAINER me <me@x>",
]

STEPS = [
    "ARG BASE=busybox", "FROM $BASE AS first", "ARG A=1", "ARG B", 'ENV E="x y"     F=2',
    'LABEL l1=v1 "l 2"="v 2"', "EXPOSE 80 443/udp 8000-8001", "WORKDIR sub", "USER nobody:nogroup",
    'VOLUME /data ["/x"]', 'VOLUME ["/y", "/z"]', "STOPSIGNAL SIGTERM",
    "HEALTHCHECK --interval=5m --timeout=3s --retries=3 CMD true", "RUN echo $A $B > /tmp/f",
    'RUN ["echo", "hi"]', 'SHELL ["/bin/sh", "-ec"]', 'CMD ["sh"]', 'CMD echo "x"', 'ENTRYPOINT ["/bin/echo"]',
    "ONBUILD RUN echo onbuild", "MAINTAINER me <me@x>",
]


def _legacy_history(text: str, build_args: dict[str, str | None]) -> list[str]:
    """A miniature legacy dispatcher: just enough to produce each step's created_by."""
    df = parse_dockerfile(text)
    stage = df.stages[0]
    scope = ArgScope(build_args, meta={}, escape=df.escape)
    shell: tuple[str, ...] = ("/bin/sh", "-c")
    workdir = "/"
    out: list[str] = []
    for instr in stage.commands:
        if isinstance(instr, ins.Arg):
            expanded = instr.expand(scope.expand)
            scope.declare(instr)
            out.append(nop(shell, nop_comment(expanded)))
        elif isinstance(instr, ins.Env):
            out.append(nop(shell, nop_comment(scope.set_env(instr))))
        elif isinstance(instr, ins.Run):
            out.append(created_by_run(resolve_cmdline(instr.cmd, instr.prepend_shell, shell), scope.history_args()))
        elif isinstance(instr, ins.Workdir):
            workdir = resolve_workdir(workdir, instr.expand(scope.expand).path)
            out.append(created_by_workdir(shell, workdir))
        elif isinstance(instr, ins.Expose):
            out.append(nop(shell, nop_comment(instr.expand(scope.expand_words))))
        else:
            if isinstance(instr, ins.Shell):
                shell = instr.shell
            expand = getattr(instr, "expand", None)
            out.append(nop(shell, nop_comment(expand(scope.expand) if expand else instr, shell)))
    return out


def test_created_by_matches_dockerd() -> None:
    assert _legacy_history(PROBE, {"B": "bee", "HTTP_PROXY": "p"}) == DOCKERD


def test_step_lines_match_dockerd() -> None:
    df = parse_dockerfile(PROBE)
    instrs: list[ins.Instruction] = [*df.meta_args]
    for stage in df.stages:
        instrs += [stage.from_, *stage.commands]
    assert step_count(df) == 21
    assert [step_line(i, 21, x) for i, x in enumerate(instrs, 1)] == [
        f"Step {i}/21 : {s}\n" for i, s in enumerate(STEPS, 1)]


def test_copy_and_run_history_forms() -> None:
    assert created_by_copy(("/bin/sh", "-c"), "COPY", "file:abc", "/app/") == "/bin/sh -c #(nop) COPY file:abc in /app/ "
    assert created_by_run(["/bin/sh", "-c", "make"]) == "/bin/sh -c make"
    assert created_by_run(["/bin/sh", "-c", "make"], []) == "|0 /bin/sh -c make"


@pytest.mark.parametrize("line,want", [
    ("HEALTHCHECK NONE", """HEALTHCHECK &{["NONE"] "0s" "0s" "0s" '\\x00'}"""),
    ("HEALTHCHECK --interval=90s --retries=65 CMD [\"a\"]", """HEALTHCHECK &{["CMD" "a"] "1m30s" "0s" "0s" 'A'}"""),
    ("ENTRYPOINT []", "ENTRYPOINT []"),
    ("CMD []", "CMD []"),
    ("ENTRYPOINT run it", 'ENTRYPOINT ["/bin/sh" "-c" "run it"]'),
])
def test_nop_comments(line: str, want: str) -> None:
    instr = parse_dockerfile(f"FROM x\n{line}\n").stages[0].commands[0]
    assert nop_comment(instr) == want


def test_run_is_not_a_nop() -> None:
    with pytest.raises(ValueError):
        nop_comment(parse_dockerfile("FROM x\nRUN a\n").stages[0].commands[0])


@pytest.mark.parametrize("s,want", [
    ("plain", '"plain"'), ('q"b\\', '"q\\"b\\\\"'), ("a\nb\tc", '"a\\nb\\tc"'), ("\x00\x7f", '"\\x00\\x7f"'),
    ("café ✓", '"café ✓"'), ("\u2028", '"\\u2028"'),
])
def test_go_quote(s: str, want: str) -> None:
    assert go_quote(s) == want


@pytest.mark.parametrize("n,want", [(0, "'\\x00'"), (3, "'\\x03'"), (10, "'\\n'"), (65, "'A'"), (39, "'\\''")])
def test_go_quote_rune(n: int, want: str) -> None:
    assert go_quote_rune(n) == want


@pytest.mark.parametrize("text,ns,canonical", [
    ("0", 0, "0s"), ("5m", 300_000_000_000, "5m0s"), ("1h", 3_600_000_000_000, "1h0m0s"),
    ("1.5s", 1_500_000_000, "1.5s"), ("300ms", 300_000_000, "300ms"), ("2us", 2_000, "2µs"), ("7ns", 7, "7ns"),
    ("1h2m3.5s", 3_723_500_000_000, "1h2m3.5s"), ("90s", 90_000_000_000, "1m30s"), (".5s", 500_000_000, "500ms"),
])
def test_go_durations(text: str, ns: int, canonical: str) -> None:
    assert parse_go_duration(text) == ns
    assert format_go_duration(ns) == canonical


@given(st.integers(min_value=0, max_value=10**15))
def test_duration_format_round_trips(ns: int) -> None:
    assert parse_go_duration(format_go_duration(ns)) == ns


@pytest.mark.parametrize("ports,want", [
    (["80"], ["80/tcp"]),
    (["53/udp", "53/UDP", "443/tcp"], ["53/udp", "443/tcp"]),
    (["8000-8002/sctp"], ["8000/sctp", "8001/sctp", "8002/sctp"]),
    (["127.0.0.1:8080:80"], ["80/tcp"]),
])
def test_exposed_ports(ports: list[str], want: list[str]) -> None:
    assert exposed_ports(ports) == want


@pytest.mark.parametrize("ports,message", [
    (["80/xyz"], "Invalid proto: xyz"), (["http"], "Invalid containerPort: http"), (["9-1"], "Invalid containerPort: 9-1"),
])
def test_exposed_port_errors(ports: list[str], message: str) -> None:
    with pytest.raises(InvalidParameter, match=message):
        exposed_ports(ports)


@pytest.mark.parametrize("raw,want", [("SIGTERM", 15), ("term", 15), ("9", 9), ("SIGRTMIN+1", 35), ("KILL", 9)])
def test_parse_signal(raw: str, want: int) -> None:
    assert parse_signal(raw) == want


@pytest.mark.parametrize("raw", ["FOO", "0", "SIG"])
def test_parse_signal_errors(raw: str) -> None:
    with pytest.raises(InvalidParameter, match=f"Invalid signal: {raw}"):
        parse_signal(raw)


@pytest.mark.parametrize("current,path,want", [
    ("/", "sub", "/sub"), ("/a", "b/../c", "/a/c"), ("/a", "/x//y/", "/x/y"), ("", "a", "/a"), ("/a", "..", "/"),
])
def test_resolve_workdir(current: str, path: str, want: str) -> None:
    assert resolve_workdir(current, path) == want


@pytest.mark.parametrize("line,cmd,files", [
    ("RUN echo hi", ("echo hi",), ()),
    ("RUN <<EOF\necho a\n\techo b\nEOF", ("echo a\n\techo b\n",), ()),
    ("RUN <<-EOF\n\techo b\nEOF", ("echo b\n",), ()),
    ("RUN <<run.py\n#!/usr/bin/env python3\nprint(1)\nrun.py",
     ("/dev/pipes/run.py",), (("/dev/pipes/run.py", "#!/usr/bin/env python3\nprint(1)\n", 0o755),)),
    ("RUN cat <<A > /a && cat <<B > /b\n1\nA\n2\nB", ("cat <<A > /a && cat <<B > /b\n1\nA\n2\nB",), ()),
])
def test_run_heredoc_commands(line: str, cmd: tuple[str, ...], files: tuple[tuple[str, str, int], ...]) -> None:
    run = parse_dockerfile(f"FROM x\n{line}\n").stages[0].commands[0]
    assert isinstance(run, ins.Run)
    result = run_command(run)
    assert (result.cmd, result.files, result.prepend_shell) == (cmd, files, True)
