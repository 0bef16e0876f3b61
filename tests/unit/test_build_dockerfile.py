import pytest
from hypothesis import given
from hypothesis import strategies as st

from berth.build.dockerfile import (
    Heredoc,
    extract_builder_flags,
    heredocs_from_line,
    parse,
    parse_heredoc,
    parse_words,
)
from berth.build.errors import DockerfileError


def nodes(text: str) -> list[tuple[str, list[str]]]:
    return [(n.keyword, n.args) for n in parse(text).nodes]


@pytest.mark.parametrize("text,want", [
    ("FROM busybox\n", [("FROM", ["busybox"])]),
    ("from busybox as Build\n", [("from", ["busybox", "as", "Build"])]),
    ("FROM busybox\r\nRUN echo hi\r\n", [("FROM", ["busybox"]), ("RUN", ["echo hi"])]),
    ("\ufeffFROM busybox", [("FROM", ["busybox"])]),
    ("  \tFROM   busybox  \n", [("FROM", ["busybox"])]),
    ("# comment\nFROM busybox # not a comment\n", [("FROM", ["busybox", "#", "not", "a", "comment"])]),
    ("FROM busybox\nRUN echo a \\\n  b\n", [("FROM", ["busybox"]), ("RUN", ["echo a   b"])]),
    ("FROM busybox\nRUN echo a \\\n# inside\n  b\n", [("FROM", ["busybox"]), ("RUN", ["echo a   b"])]),
    ("FROM busybox\nRUN echo a \\  \t\n  b\n", [("FROM", ["busybox"]), ("RUN", ["echo a   b"])]),
    ("FROM busybox\nRUN echo \\\n\n  hi\n", [("FROM", ["busybox"]), ("RUN", ["echo   hi"])]),
    ("FROM busybox\nRUN echo \\", [("FROM", ["busybox"]), ("RUN", ["echo"])]),
    ("FROM busybox\nRUN [\"echo\", \"a b\"]\n", [("FROM", ["busybox"]), ("RUN", ["echo", "a b"])]),
    ("FROM busybox\nRUN [\"echo\", \"a b\"\n", [("FROM", ["busybox"]), ("RUN", ['["echo", "a b"'])]),
    ("FROM busybox\nCMD []\n", [("FROM", ["busybox"]), ("CMD", [])]),
    ("FROM busybox\nCOPY a  b\tc\n", [("FROM", ["busybox"]), ("COPY", ["a", "b", "c"])]),
    ("FROM busybox\nCOPY [\"a b\", \"c\"]\n", [("FROM", ["busybox"]), ("COPY", ["a b", "c"])]),
    ("FROM busybox\nENV A=1 B=\"x y\"\n", [("FROM", ["busybox"]), ("ENV", ["A", "1", "=", "B", '"x y"', "="])]),
    ("FROM busybox\nENV A x  y\n", [("FROM", ["busybox"]), ("ENV", ["A", "x  y", ""])]),
    ("FROM busybox\nLABEL \"a b\"=c\n", [("FROM", ["busybox"]), ("LABEL", ['"a b"', "c", "="])]),
    ("FROM busybox\nARG A B=2 C=\"x y\"\n", [("FROM", ["busybox"]), ("ARG", ["A", "B=2", 'C="x y"'])]),
    ("FROM busybox\nUSER a b\n", [("FROM", ["busybox"]), ("USER", ["a b"])]),
    ("FROM busybox\nWORKDIR\n", [("FROM", ["busybox"]), ("WORKDIR", [])]),
    ("FROM busybox\nHEALTHCHECK CMD [\"a\"]\n", [("FROM", ["busybox"]), ("HEALTHCHECK", ["CMD", "a"])]),
    ("FROM busybox\nHEALTHCHECK --retries=3 CMD a b\n",
     [("FROM", ["busybox"]), ("HEALTHCHECK", ["CMD", "a b"])]),
    ("FROM busybox\nHEALTHCHECK NONE\n", [("FROM", ["busybox"]), ("HEALTHCHECK", ["NONE"])]),
    ("FROM busybox\nEXPOSE 80\t443/udp\n", [("FROM", ["busybox"]), ("EXPOSE", ["80", "443/udp"])]),
    ("FROM busybox\nBOGUS a b\n", [("FROM", ["busybox"]), ("BOGUS", [])]),
])
def test_split_into_nodes(text: str, want: list[tuple[str, list[str]]]) -> None:
    assert nodes(text) == want


def test_original_line_joins_continuations_as_dockerd_prints_it() -> None:
    node = parse('FROM busybox\nENV E="x y" \\\n    # a comment inside\n    F=2\n').nodes[1]
    assert node.original.strip() == 'ENV E="x y"     F=2'
    assert (node.line, node.end_line) == (2, 4)


def test_empty_continuation_line_warns() -> None:
    result = parse("FROM busybox\nRUN echo \\\n\n  hi\n")
    assert [w.rule for w in result.warnings] == ["NoEmptyContinuation"]


@pytest.mark.parametrize("text,escape,syntax,check", [
    ("# escape=`\nFROM busybox\n", "`", None, None),
    ("#escape=\\\nFROM busybox\n", "\\", None, None),
    ("# syntax=docker/dockerfile:1\n# escape=`\nFROM busybox\n", "`", "docker/dockerfile:1", None),
    ("# ESCAPE = ` \nFROM busybox\n", "`", None, None),
    ("# check=skip=all\nFROM busybox\n", "\\", None, "skip=all"),
    ("# comment\n# escape=`\nFROM busybox\n", "\\", None, None),  # directives only at the top
    ("\n# escape=`\nFROM busybox\n", "\\", None, None),
    ("# unknown=x\n# escape=`\nFROM busybox\n", "\\", None, None),
    ("FROM busybox\n# escape=`\n", "\\", None, None),
])
def test_directives(text: str, escape: str, syntax: str | None, check: str | None) -> None:
    result = parse(text)
    assert (result.escape, result.directives.syntax, result.directives.check) == (escape, syntax, check)


def test_backtick_escape_continues_lines_and_keeps_backslashes() -> None:
    result = parse("# escape=`\nFROM busybox\nRUN dir c:\\ `\n  /b\n")
    assert result.nodes[1].args == ["dir c:\\   /b"]
    # With the default escape, a trailing backslash continues the line instead.
    assert parse("FROM busybox\nRUN dir c:\\\nRUN x\n").nodes[1].args == ["dir c:RUN x"]


@pytest.mark.parametrize("text,message", [
    ("# escape=x\nFROM busybox\n", "invalid escape token 'x' does not match ` or \\"),
    ("# escape=`\n# escape=\\\nFROM busybox\n", "only one escape parser directive can be used"),
    ("", "file with no instructions"),
    ("# just a comment\n\n", "file with no instructions"),
])
def test_directive_and_file_errors(text: str, message: str) -> None:
    with pytest.raises(DockerfileError) as info:
        parse(text)
    assert info.value.reason == message


def test_heredocs_are_read_after_the_instruction_line() -> None:
    text = "FROM busybox\nRUN <<EOF\necho hi\n  echo there\nEOF\nRUN x\n"
    result = parse(text)
    run = result.nodes[1]
    assert run.args == ["<<EOF"]
    assert run.heredocs == [Heredoc("EOF", "echo hi\n  echo there\n", expand=True)]
    assert (run.line, run.end_line) == (2, 5)
    assert result.nodes[2].args == ["x"]


def test_several_heredocs_and_quoted_and_chomped_ones() -> None:
    text = 'FROM busybox\nCOPY <<A <<-"B" /dst/\na1\nA\n\tb1\n\tB\nRUN x\n'
    copy = parse(text).nodes[1]
    assert copy.heredocs == [Heredoc("A", "a1\n", True), Heredoc("B", "\tb1\n", False, chomp=True)]
    assert copy.heredocs[1].data == "b1\n"


def test_heredoc_is_not_looked_for_in_json_form_or_other_instructions() -> None:
    result = parse('FROM busybox\nRUN ["cat", "<<EOF"]\nCMD cat <<EOF\n')
    assert [n.heredocs for n in result.nodes] == [[], [], []]


def test_unterminated_heredoc() -> None:
    with pytest.raises(DockerfileError) as info:
        parse("FROM busybox\nRUN <<EOF\necho hi\n")
    assert info.value.reason == "unterminated heredoc"
    assert (info.value.line, info.value.end_line) == (2, 3)
    assert str(info.value) == "Dockerfile:2:1: unterminated heredoc"


@pytest.mark.parametrize("word,want", [
    ("<<EOF", Heredoc("EOF")),
    ("<<-EOF", Heredoc("EOF", chomp=True)),
    ("<<'EOF'", Heredoc("EOF", expand=False)),
    ('<<"EOF"', Heredoc("EOF", expand=False)),
    ('<<E"O"F', Heredoc("EOF", expand=False)),
    ("3<<EOF", Heredoc("EOF", fd=3)),
    ("<<", None),
    ("<<-", None),
    ("a<<EOF", None),
    ("<<EOF<<X", None),
    ("EOF", None),
])
def test_parse_heredoc(word: str, want: Heredoc | None) -> None:
    assert parse_heredoc(word) == want


def test_heredocs_from_line_ignore_quoted_markers() -> None:
    assert [h.name for h in heredocs_from_line("RUN cat <<A '<<B' \"x\" <<C")] == ["A", "C"]


@pytest.mark.parametrize("line,rest,flags", [
    ("--from=a b c", "b c", ["--from=a"]),
    ("  --link --chmod=644 a b", "a b", ["--link", "--chmod=644"]),
    ('--mount="type=bind,target=/x" echo', "echo", ["--mount=type=bind,target=/x"]),
    ("--a='x y' z", "z", ["--a=x y"]),
    ("--x=a\\ b c", "c", ["--x=a b"]),
    ("-- --notaflag", " --notaflag", []),
    ("-x --y", "-x --y", []),
    ("--only", "", ["--only"]),
    ("echo --x", "echo --x", []),
    ("", "", []),
])
def test_extract_builder_flags(line: str, rest: str, flags: list[str]) -> None:
    got_rest, got_flags = extract_builder_flags(line)
    assert (got_rest, [f for f, _ in got_flags]) == (rest, flags)


@pytest.mark.parametrize("rest,want", [
    ("a b", ["a", "b"]),
    ('A="x y" B=z', ['A="x y"', "B=z"]),
    ("A='x \"y' B", ["A='x \"y'", "B"]),
    ("A=x\\ y", ["A=x\\ y"]),
    ('A="a\\"b"', ['A="a\\"b"']),
    ('""', ['""']),
    ("a\\", ["a"]),
    ("  ", []),
])
def test_parse_words_keeps_quotes_for_expansion(rest: str, want: list[str]) -> None:
    assert parse_words(rest, "\\") == want


@pytest.mark.parametrize("text,line,column,message", [
    ("FROM busybox\n  RUNN x\n", 2, 3, "unknown instruction: RUNN (did you mean run?)"),
    ("FROM busybox\nCOPY --bogus a b\n", 2, 6, "unknown flag: bogus"),
    ("FROM busybox\nCOPY a \\\n  --chmod=1 b\n", 2, 1, None),
    ("FROM busybox\nRUN --mount=type=cache,target=/x \\\n  --netwrk=none echo\n", 3, 3,
     "unknown flag: netwrk (did you mean network?)"),
    ("FROM busybox\nENV\n", 2, 1, "ENV requires at least one argument"),
    ("FROM busybox\nENV A\n", 2, 1, "ENV must have two arguments"),
    ("FROM busybox\nENV A=1 B\n", 2, 1,
     "Syntax error - can't find = in \"B\". Must be of the form: name=value"),
    ("FROM busybox\nCMD [\"a\", 1]\n", 2, 1,
     "when using JSON array syntax, arrays must be comprised of strings only"),
])
def test_errors_name_line_and_column(text: str, line: int, column: int, message: str | None) -> None:
    from berth.build.parse import parse_dockerfile

    if message is None:
        parse_dockerfile(text)
        return
    with pytest.raises(DockerfileError) as info:
        parse_dockerfile(text)
    assert (info.value.line, info.value.column, info.value.reason) == (line, column, message)
    assert str(info.value) == f"Dockerfile:{line}:{column}: {message}"
    assert info.value.legacy_message == f"dockerfile parse error line {line}: {message}"
    assert info.value.status == 400


@given(st.lists(st.from_regex(r"[a-z0-9_./-]{1,8}", fullmatch=True), min_size=1, max_size=6))
def test_continuations_anywhere_give_the_same_words(words: list[str]) -> None:
    one_line = "FROM busybox\nCOPY " + " ".join(words) + " /dst/\n"
    split = "FROM busybox\nCOPY " + " \\\n  ".join(words) + " \\\n /dst/\n"
    assert parse(one_line).nodes[1].args == parse(split).nodes[1].args
