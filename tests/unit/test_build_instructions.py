import pytest

from berth.build import instructions as ins
from berth.build.dockerfile import Heredoc
from berth.build.errors import DockerfileError
from berth.build.mounts import Mount, MountError, parse_mount
from berth.build.parse import parse_dockerfile, parse_trigger


def one(line: str) -> ins.Instruction:
    dockerfile = parse_dockerfile(f"FROM busybox\n{line}\n")
    return dockerfile.stages[0].commands[0]


def fails(line: str) -> str:
    with pytest.raises(DockerfileError) as info:
        parse_dockerfile(f"FROM busybox\n{line}\n")
    assert info.value.line == 2
    return info.value.reason


@pytest.mark.parametrize("line,want", [
    ("FROM busybox", ins.From("FROM busybox", 1, 1, base="busybox")),
    ("FROM busybox AS Build", ins.From("FROM busybox AS Build", 1, 1, base="busybox", stage_name="build")),
    ("FROM --platform=$BUILDPLATFORM golang:1 as b-1.x",
     ins.From("FROM --platform=$BUILDPLATFORM golang:1 as b-1.x", 1, 1, base="golang:1", stage_name="b-1.x",
              platform="$BUILDPLATFORM")),
])
def test_from(line: str, want: ins.From) -> None:
    assert parse_dockerfile(line).stages[0].from_ == want


@pytest.mark.parametrize("line,message", [
    ("FROM", "FROM requires either one or three arguments"),
    ("FROM a b", "FROM requires either one or three arguments"),
    ("FROM a AS b c", "FROM requires either one or three arguments"),
    ("FROM a AS 1x", 'invalid name for build stage: "1x", name can\'t start with a number or contain symbols'),
    ("FROM a AS b$c", 'invalid name for build stage: "b$c", name can\'t start with a number or contain symbols'),
    ("FROM --plat=x a", "unknown flag: plat"),
    ("FROM --platform a", "missing a value on flag: platform"),
    ("RUN echo", "no build stage in current context"),
    ("ENV A=1\nFROM a", "no build stage in current context"),
])
def test_from_errors(line: str, message: str) -> None:
    with pytest.raises(DockerfileError) as info:
        parse_dockerfile(line)
    assert info.value.reason == message


def test_meta_args_are_the_args_before_the_first_from() -> None:
    df = parse_dockerfile("ARG A=1\n# c\nARG B\nFROM busybox\nARG C\n")
    assert [a.args for a in df.meta_args] == [(ins.ArgDecl("A", "1"),), (ins.ArgDecl("B"),)]
    assert df.stages[0].commands == [ins.Arg("ARG C", 5, 5, (ins.ArgDecl("C"),))]


@pytest.mark.parametrize("line,cmd,shell", [
    ("RUN echo hi", ("echo hi",), True),
    ("RUN   echo  hi  ", ("echo  hi",), True),
    ('RUN ["echo", "hi"]', ("echo", "hi"), False),
    ("RUN [ \"a\" ]", ("a",), False),
    ("RUN [echo]", ("[echo]",), True),
    ("CMD", (), True),
    ("CMD []", (), False),
    ('CMD ["sh"]', ("sh",), False),
    ("ENTRYPOINT /bin/x -y", ("/bin/x -y",), True),
])
def test_shell_and_exec_forms(line: str, cmd: tuple[str, ...], shell: bool) -> None:
    instr = one(line)
    assert isinstance(instr, ins.ShellDependent)
    assert (instr.cmd, instr.prepend_shell) == (cmd, shell)


def test_entrypoint_empty_resets() -> None:
    instr = one("ENTRYPOINT []")
    assert isinstance(instr, ins.Entrypoint) and instr.reset and instr.cmd == ()


def test_run_flags() -> None:
    instr = one("RUN --mount=type=cache,target=/root/.cache,id=pip --network=none --security=insecure pip x")
    assert isinstance(instr, ins.Run)
    assert instr.network == "none" and instr.security == "insecure"
    assert instr.mounts == (Mount(type="cache", target="/root/.cache", id="pip", readonly=False,
                                  sharing="shared"),)
    assert instr.cmd == ("pip x",)


def test_run_heredoc() -> None:
    instr = one("RUN <<EOF\necho hi\nEOF")
    assert isinstance(instr, ins.Run)
    assert instr.cmd == ("<<EOF",) and instr.files == (Heredoc("EOF", "echo hi\n"),)


@pytest.mark.parametrize("line,message", [
    ("RUN --network=bridge x", 'unsupported network mode "bridge"'),
    ("RUN --security=root x", 'unsupported security mode "root"'),
    ("RUN --mount=type=foo,target=/x x", 'unsupported mount type "foo"'),
    ("RUN --mount=type=bind x", "mount type bind requires a target"),
    ("RUN --mount=target=/x,bogus=1 x", "unexpected key 'bogus' in 'bogus=1'"),
    ("RUN --mount x", "missing a value on flag: mount"),
    ("RUN --network=none --network=host x", "duplicate flag specified: network"),
    ("RUN --version", "unknown flag: version"),
    ("CMD --x", "unknown flag: x"),
])
def test_run_errors(line: str, message: str) -> None:
    assert fails(line) == message


@pytest.mark.parametrize("spec,want", [
    ("target=/x", Mount(target="/x")),
    ("type=bind,source=/src,target=/x,rw", Mount(source="/src", target="/x", readonly=False)),
    ("type=bind,from=build,src=/out,dst=/in,readonly=false", Mount(from_="build", source="/out", target="/in",
                                                                   readonly=False)),
    ("type=cache,target=/c,sharing=locked,mode=0700,uid=1000,gid=1000",
     Mount(type="cache", target="/c", readonly=False, sharing="locked", mode=0o700, uid=1000, gid=1000)),
    ("type=tmpfs,target=/t,size=64m", Mount(type="tmpfs", target="/t", readonly=False, size=64 << 20)),
    ("type=secret,id=aws", Mount(type="secret", id="aws", target="/run/secrets/aws")),
    ("type=secret,target=/root/.npmrc,required", Mount(type="secret", id=".npmrc", target="/root/.npmrc",
                                                       required=True)),
    ("type=secret,id=tok,env=TOKEN", Mount(type="secret", id="tok", target="/run/secrets/tok", env="TOKEN")),
    ("type=ssh", Mount(type="ssh", id="default")),
    ("TYPE=Cache,Target=/c", Mount(type="cache", target="/c", readonly=False, sharing="shared")),
])
def test_parse_mount(spec: str, want: Mount) -> None:
    assert parse_mount(spec) == want


@pytest.mark.parametrize("spec,message", [
    ("type=bind,target=/x,sharing=shared", "invalid cache sharing set for bind mount"),
    ("type=cache,target=/x,sharing=wild", 'unsupported sharing value "wild"'),
    ("type=cache,target=/x,size=1m", "unexpected key 'size' for mount type 'cache'"),
    ("type=bind,target=/x,required", "unexpected key 'required' for mount type 'bind'"),
    ("type=secret,from=x,id=a", "secret mount should not have a from"),
    ("type=secret", "one of source, target required"),
    ("type=cache,target=/x,mode=999", "invalid value 999 for mode"),
    ("type=cache,target=/x,ro=maybe", "invalid value for ro: maybe"),
    ("target", "invalid field 'target' must be a key=value pair"),
])
def test_parse_mount_errors(spec: str, message: str) -> None:
    with pytest.raises(MountError) as info:
        parse_mount(spec)
    assert str(info.value) == message


def test_mount_values_with_variables_wait_for_the_expander() -> None:
    assert parse_mount("type=cache,target=$DIR").target == ""
    assert parse_mount("type=cache,target=$DIR", lambda v: v.replace("$DIR", "/c")).target == "/c"


@pytest.mark.parametrize("line,pairs", [
    ("ENV A=1", [("A", "1", False)]),
    ('ENV A="x y" B=2', [("A", '"x y"', False), ("B", "2", False)]),
    ("ENV A x y", [("A", "x y", True)]),
    ("LABEL a=b \"c d\"=e", [("a", "b", False), ('"c d"', "e", False)]),
    ("ENV A=", [("A", "", False)]),
])
def test_env_and_label(line: str, pairs: list[tuple[str, str, bool]]) -> None:
    instr = one(line)
    assert isinstance(instr, (ins.Env, ins.Label))
    assert [(p.key, p.value, p.legacy_form) for p in instr.pairs] == pairs


def test_legacy_env_form_warns() -> None:
    df = parse_dockerfile("FROM busybox\nENV A b\nMAINTAINER me\n")
    assert [w.rule for w in df.warnings] == ["LegacyKeyValueFormat", "MaintainerDeprecated"]


@pytest.mark.parametrize("line,message", [
    ("ENV =x", "ENV names can not be blank"),
    ("LABEL", "LABEL requires at least one argument"),
    ("ARG", "ARG requires at least one argument"),
    ("EXPOSE", "EXPOSE requires at least one argument"),
    ("USER", "USER requires exactly one argument"),
    ("WORKDIR", "WORKDIR requires exactly one argument"),
    ("STOPSIGNAL", "STOPSIGNAL requires exactly one argument"),
    ("MAINTAINER", "MAINTAINER requires exactly one argument"),
    ("VOLUME", "VOLUME requires at least one argument"),
    ('VOLUME [""]', "VOLUME specified can not be an empty string"),
    ("SHELL", "SHELL requires at least one argument"),
    ("SHELL []", "SHELL requires at least one argument"),
    ("SHELL /bin/bash -c", "SHELL requires the arguments to be in JSON form"),
    ("USER --x=1 root", "unknown flag: x"),
])
def test_argument_count_errors(line: str, message: str) -> None:
    assert fails(line) == message


def test_arg_declarations() -> None:
    instr = one('ARG A B=2 C="x y" D=')
    assert isinstance(instr, ins.Arg)
    assert instr.args == (ins.ArgDecl("A"), ins.ArgDecl("B", "2"), ins.ArgDecl("C", '"x y"'), ins.ArgDecl("D", ""))


def test_expose_sorts_as_written() -> None:
    instr = one("EXPOSE 80 443/udp 8000-8001 $P")
    assert isinstance(instr, ins.Expose)
    assert instr.ports == ("$P", "443/udp", "80", "8000-8001")
    assert instr.expand(lambda w: ["1", "2"] if w == "$P" else [w]).ports == ("1", "2", "443/udp", "80",
                                                                              "8000-8001")


@pytest.mark.parametrize("line,want", [
    ("COPY a b /dst/", {"sources": ("a", "b"), "dest": "/dst/"}),
    ('COPY ["a b", "/d"]', {"sources": ("a b",), "dest": "/d"}),
    ("COPY --from=build --chown=1:1 --chmod=644 --link /out /in",
     {"sources": ("/out",), "dest": "/in", "from_": "build", "chown": "1:1", "chmod": "644", "link": True}),
    ("COPY --link=false --exclude=*.md --exclude=x . /app",
     {"sources": (".",), "dest": "/app", "link": False, "excludes": ("*.md", "x")}),
    ("COPY --parents a/b /x", {"sources": ("a/b",), "dest": "/x", "parents": True}),
])
def test_copy(line: str, want: dict[str, object]) -> None:
    instr = one(line)
    assert isinstance(instr, ins.Copy)
    for key, value in want.items():
        assert getattr(instr, key) == value


def test_copy_heredoc_sources() -> None:
    instr = one("COPY <<a.txt <<-'b.sh' plain /dst/\nhello $X\na.txt\n\techo\n\tb.sh")
    assert isinstance(instr, ins.Copy)
    assert instr.sources == ("plain",)
    assert instr.contents == (ins.SourceContent("a.txt", "hello $X\n", True), ins.SourceContent("b.sh", "echo\n", False))
    assert instr.dest == "/dst/"


def test_add_flags() -> None:
    instr = one("ADD --checksum=sha256:abc --keep-git-dir --unpack=false --chmod=755 https://x/y.tgz /y")
    assert isinstance(instr, ins.Add)
    assert (instr.checksum, instr.keep_git_dir, instr.unpack, instr.chmod) == ("sha256:abc", True, False, "755")


@pytest.mark.parametrize("line,message", [
    ("COPY a", "COPY requires at least two arguments, but only one was provided. Destination could not be "
               "determined"),
    ("ADD a", "ADD requires at least two arguments, but only one was provided. Destination could not be "
              "determined"),
    ("COPY a <<EOF\nx\nEOF", "COPY cannot accept a heredoc as a destination"),
    ("ADD --from=x a b", "unknown flag: from"),
    ("COPY --link=maybe a b", "expecting boolean value for flag link, not: maybe"),
    ("COPY --link= a b", "missing a value on flag: link"),
    ("COPY --from a b", "missing a value on flag: from"),
    ("COPY --from=a --from=b a b", "duplicate flag specified: from"),
    ("COPY --chmown=1 a b", "unknown flag: chmown (did you mean chown?)"),
])
def test_copy_errors(line: str, message: str) -> None:
    assert fails(line) == message


@pytest.mark.parametrize("line,test,durations,retries", [
    ("HEALTHCHECK NONE", ("NONE",), (0, 0, 0, 0), 0),
    ("HEALTHCHECK CMD curl -f http://x/ || exit 1", ("CMD-SHELL", "curl -f http://x/ || exit 1"), (0, 0, 0, 0), 0),
    ('HEALTHCHECK --interval=5m --timeout=3s CMD ["/bin/check", "-q"]', ("CMD", "/bin/check", "-q"),
     (300_000_000_000, 3_000_000_000, 0, 0), 0),
    ("HEALTHCHECK --start-period=1m30s --start-interval=500ms --retries=3 cmd true", ("CMD-SHELL", "true"),
     (0, 0, 90_000_000_000, 500_000_000), 3),
    ("HEALTHCHECK --interval=0s CMD true", ("CMD-SHELL", "true"), (0, 0, 0, 0), 0),
])
def test_healthcheck(line: str, test: tuple[str, ...], durations: tuple[int, ...], retries: int) -> None:
    instr = one(line)
    assert isinstance(instr, ins.Healthcheck)
    assert instr.test == test
    assert (instr.interval, instr.timeout, instr.start_period, instr.start_interval) == durations
    assert instr.retries == retries


@pytest.mark.parametrize("line,message", [
    ("HEALTHCHECK", "HEALTHCHECK requires at least one argument"),
    ("HEALTHCHECK NONE x", "HEALTHCHECK NONE takes no arguments"),
    ("HEALTHCHECK CMD", "Missing command after HEALTHCHECK CMD"),
    ("HEALTHCHECK RUN x", 'Unknown type "RUN" in HEALTHCHECK (try CMD)'),
    ("HEALTHCHECK --interval=1ns CMD x", 'Interval "interval" cannot be less than 1ms'),
    ("HEALTHCHECK --timeout=5 CMD x", 'time: missing unit in duration "5"'),
    ("HEALTHCHECK --timeout=5y CMD x", 'time: unknown unit "y" in duration "5y"'),
    ("HEALTHCHECK --retries=-1 CMD x", "--retries cannot be negative (-1)"),
    ("HEALTHCHECK --retries=x CMD x", 'strconv.ParseInt: parsing "x": invalid syntax'),
])
def test_healthcheck_errors(line: str, message: str) -> None:
    assert fails(line) == message


def test_simple_instructions() -> None:
    assert one("WORKDIR /a b") == ins.Workdir("WORKDIR /a b", 2, 2, path="/a b")
    assert one("USER app:app") == ins.User("USER app:app", 2, 2, user="app:app")
    assert one("STOPSIGNAL SIGKILL") == ins.StopSignal("STOPSIGNAL SIGKILL", 2, 2, signal="SIGKILL")
    assert one("MAINTAINER Me <me@x>") == ins.Maintainer("MAINTAINER Me <me@x>", 2, 2, maintainer="Me <me@x>")
    assert one('SHELL ["bash", "-c"]') == ins.Shell('SHELL ["bash", "-c"]', 2, 2, shell=("bash", "-c"))
    assert one("VOLUME /a /b") == ins.Volume("VOLUME /a /b", 2, 2, volumes=("/a", "/b"))
    assert one('VOLUME ["/a b"]') == ins.Volume('VOLUME ["/a b"]', 2, 2, volumes=("/a b",))
    assert one('VOLUME /data ["/x"]') == ins.Volume('VOLUME /data ["/x"]', 2, 2, volumes=("/data", '["/x"]'))


def test_onbuild() -> None:
    instr = one("onbuild  RUN echo $HOME")
    assert instr == ins.Onbuild("onbuild  RUN echo $HOME", 2, 2, expression="RUN echo $HOME", trigger="RUN")
    assert isinstance(instr, ins.Onbuild)
    assert parse_trigger(instr.expression) == ins.Run("RUN echo $HOME", 1, 1, cmd=("echo $HOME",))


@pytest.mark.parametrize("line,message", [
    ("ONBUILD", "ONBUILD requires at least one argument"),
    ("ONBUILD ONBUILD RUN x", "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
    ("ONBUILD FROM x", "FROM isn't allowed as an ONBUILD trigger"),
    ("ONBUILD MAINTAINER x", "MAINTAINER isn't allowed as an ONBUILD trigger"),
    ("ONBUILD RUNN x", "unknown instruction: RUNN (did you mean run?)"),
])
def test_onbuild_errors(line: str, message: str) -> None:
    assert fails(line) == message


def test_expansion_rules_per_instruction() -> None:
    env = {"A": "1", "B": "two"}.get

    def fn(word: str) -> str:
        return word.replace("$A", env("A") or "").replace("$B", env("B") or "")

    assert one("ENV $A=$B").expand(fn).pairs == (ins.KeyValue("1", "two"),)  # type: ignore[attr-defined]
    copy = one("COPY --from=$A --chown=$B --chmod=$A $A $B /$B")
    assert isinstance(copy, ins.Copy)
    assert copy.expand(fn) == ins.Copy(copy.code, 2, 2, sources=("1", "two"), dest="/two", from_="1", chown="two",
                                       chmod="1")
    assert not hasattr(one("RUN echo $A"), "expand")
    assert not hasattr(one("CMD echo $A"), "expand")
    assert not hasattr(one("HEALTHCHECK CMD echo $A"), "expand")
