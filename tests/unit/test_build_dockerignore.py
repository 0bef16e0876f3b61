import pytest
from hypothesis import given
from hypothesis import strategies as st

from berth.build.dockerignore import (
    BadPattern,
    PatternMatcher,
    candidates,
    compile_pattern,
    go_clean,
    keep_build_files,
    read_patterns,
)


@pytest.mark.parametrize("pattern,path,want", [
    ("**", "file", True),
    ("**", "dir/file", True),
    ("**/", "dir/file", True),
    ("**/file", "file", True),
    ("**/file", "dir/file", True),
    ("**/file", "dir/dir/file", True),
    ("**/file", "dir/afile", False),
    ("**/file*", "dir/dir/file.txt", True),
    ("**/*.txt", "file.txt", True),
    ("**/*.txt", "a/b/c/file.txt", True),
    ("**/**/*.txt", "dir/dir/file.txt", True),
    ("dir/**", "dir/file", True),
    ("dir/**", "dir/dir2/file", True),
    ("dir/**", "dir", False),
    ("dir/**/file", "dir/file", True),
    ("dir/**/file", "dir/a/b/file", True),
    ("**/dir2/*", "dir/dir2/file", True),
    ("**/dir2/*", "dir/dir2/dir3/file", True),  # through its parent dir/dir2/dir3
    ("*", "file", True),
    ("*", "dir/file", True),  # the parent `dir` matches
    ("*.go", "main.go", True),
    ("*.go", "cmd/main.go", False),
    ("dir/*", "dir/file", True),
    ("dir/*", "dir/a/b", True),
    ("dir", "dir/a/b/c", True),
    ("dir", "dir2", False),
    ("dir", "adir", False),
    ("a?c", "abc", True),
    ("a?c", "a/c", False),
    ("[a-c]x", "bx", True),
    ("[a-c]x", "dx", False),
    ("[^a]x", "bx", True),
    ("[^a]x", "ax", False),
    ("[\\]]x", "]x", True),
    ("\\*x", "*x", True),
    ("\\*x", "ax", False),
    ("a.b", "a.b", True),
    ("a.b", "axb", False),
    ("a+(b)|{c}$", "a+(b)|{c}$", True),
    ("./dir/", "dir/x", True),
    ("dir/../other", "other/x", True),
    ("/abs", "abs", False),  # read_patterns strips the slash; the matcher alone does not
])
def test_single_pattern(pattern: str, path: str, want: bool) -> None:
    assert PatternMatcher([pattern]).matches(path) is want


@pytest.mark.parametrize("patterns,path,want", [
    (["*.md", "!README.md"], "README.md", False),
    (["*.md", "!README.md"], "CHANGES.md", True),
    (["docs", "!docs/keep.md"], "docs/a", True),
    (["docs", "!docs/keep.md"], "docs/keep.md", False),
    (["!x"], "x", False),
    (["a", "!a", "a"], "a", True),
    (["**/*.go", "!vendor/**"], "vendor/x/y.go", False),
    (["**/*.go", "!vendor/**"], "pkg/y.go", True),
    (["*", "!keep", "keep/tmp"], "keep/src/a", False),
    (["*", "!keep", "keep/tmp"], "keep/tmp/a", True),
])
def test_later_patterns_win(patterns: list[str], path: str, want: bool) -> None:
    assert PatternMatcher(patterns).matches(path) is want


def test_directories_can_be_skipped_unless_an_exclusion_reaches_inside() -> None:
    assert PatternMatcher(["docs"]).can_skip_dir("docs")
    assert not PatternMatcher(["docs", "!docs/keep.md"]).can_skip_dir("docs")
    assert PatternMatcher(["docs", "!src/keep"]).can_skip_dir("docs")
    assert not PatternMatcher(["other"]).can_skip_dir("docs")


@pytest.mark.parametrize("pattern", ["[", "a[", "[]", "[a", "[-a]", "[a-]", "a\\", "!"])
def test_bad_patterns(pattern: str) -> None:
    with pytest.raises(BadPattern):
        PatternMatcher([pattern])


def test_read_patterns() -> None:
    text = "\ufeff# comment\n  \n /abs/path/ \n!  keep\n !notcomment\n #x\n./a/../b\n/\r\n"
    assert read_patterns(text) == ["abs/path", "!keep", "!notcomment", "#x", "b", "/"]
    assert read_patterns(b"*.log\n!important.log\n") == ["*.log", "!important.log"]


@pytest.mark.parametrize("path,want", [
    ("", "."), ("a//b/", "a/b"), ("//a", "/a"), ("./a/./b/..", "a"), ("../a", "../a"), ("/..", "/"),
])
def test_go_clean(path: str, want: str) -> None:
    assert go_clean(path) == want


@pytest.mark.parametrize("dockerfile,want", [
    ("Dockerfile", ["Dockerfile.dockerignore", ".dockerignore"]),
    ("build/Dockerfile.dev", ["build/Dockerfile.dev.dockerignore", ".dockerignore"]),
    ("./build//Dockerfile", ["build/Dockerfile.dockerignore", ".dockerignore"]),
    ("../outside/Dockerfile", [".dockerignore"]),
])
def test_candidates(dockerfile: str, want: list[str]) -> None:
    assert candidates(dockerfile) == want


def test_keep_build_files() -> None:
    assert keep_build_files(["*"], "Dockerfile") == ["*", "!.dockerignore", "!Dockerfile"]
    assert keep_build_files(["docs"], "build/Dockerfile") == ["docs"]
    assert keep_build_files(["build"], "build/Dockerfile") == ["build", "!build/Dockerfile"]


_segment = st.from_regex(r"[a-z0-9_.-]{1,6}", fullmatch=True).filter(lambda s: s not in (".", ".."))


@given(st.lists(_segment, min_size=1, max_size=4))
def test_a_literal_path_matches_itself_and_everything_below(parts: list[str]) -> None:
    path = "/".join(parts)
    matcher = PatternMatcher([path])
    assert matcher.matches(path)
    assert matcher.matches(path + "/child/file")
    assert not PatternMatcher(["!" + path]).matches(path)


@given(st.lists(_segment, min_size=1, max_size=4))
def test_star_star_matches_every_path(parts: list[str]) -> None:
    assert compile_pattern("**").match("/".join(parts))
