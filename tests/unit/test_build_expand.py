import pytest
from hypothesis import given
from hypothesis import strategies as st

from berth.build.errors import ExpansionError
from berth.build.expand import Lexer, expand, expand_heredoc, expand_words

ENV = {"PWD": "/home", "SHELL": "bash", "NULL": "", "PATH": "/usr/bin:/bin", "FILE": "a/b/c.tar.gz",
       "SPACED": "a  b"}


@pytest.mark.parametrize("word,want", [
    ("hello", "hello"),
    ("he'l'lo", "hello"),
    ("he'l\"l'o", 'hel"lo'),
    ('"hello"', "hello"),
    ('\\"hello\\"', '"hello"'),
    ("'hello'", "hello"),
    ("he\\'llo", "he'llo"),
    ('"he\\\'llo"', "he\\'llo"),  # inside double quotes \ only escapes " $ and itself
    ('"he\\\\llo"', "he\\llo"),
    ('"he\\"llo"', 'he"llo'),
    ("he\\\\llo", "he\\llo"),
    ("he\\ llo", "he llo"),
    ("a\\", "a"),  # an escape token ending the word is dropped
    ('"a\\"', None),
    ("$PWD", "/home"),
    ("${PWD}", "/home"),
    ("he$PWD", "he/home"),
    ("he${PWD}x", "he/homex"),
    ("he\\$PWD", "he$PWD"),
    ('"he\\$PWD"', "he$PWD"),
    ("'he$PWD'", "he$PWD"),
    ("he'$PWD'", "he$PWD"),
    ('"$PWD"', "/home"),
    ("he$1x", "hex"),
    ("he$.x", "he$.x"),
    ("he$pwd.", "he."),
    ("$", "$"),
    ("a $ b", "a $ b"),
    ("${PWD:-asdf}", "/home"),
    ("${XXX:-asdf}", "asdf"),
    ("${NULL:-asdf}", "asdf"),
    ("${NULL-asdf}", ""),
    ("${XXX-asdf}", "asdf"),
    ("${PWD-asdf}", "/home"),
    ("${XXX:-$PWD}", "/home"),
    ("${PWD:+asdf}", "asdf"),
    ("${NULL:+asdf}", ""),
    ("${NULL+asdf}", "asdf"),
    ("${XXX+asdf}", ""),
    ("${XXX:+asdf}", ""),
    ("he${XXX:-\\$PWD:}xx", "he$PWD:xx"),
    ("he${XXX:-${PWD:-yyy}}xx", "he/homexx"),
    ("he${XXX:-${YYY:-yyy}}xx", "heyyyxx"),
    ("he${XXX:+${PWD}}xx", "hexx"),
    ("he${PWD:+${XXX}}xx", "hexx"),
    ("he${PWD:+${SHELL}}xx", "hebashxx"),
    ("${XXX:-'a b'}", "a b"),
    ('${XXX:-"a b"}', "a b"),
    ("he${PWD?}", "he/home"),
    ("he${PWD:?}", "he/home"),
    ("he${NULL?}", "he"),
    ("${FILE#*/}", "b/c.tar.gz"),
    ("${FILE##*/}", "c.tar.gz"),
    ("${FILE%.*}", "a/b/c.tar"),
    ("${FILE%%.*}", "a/b/c"),
    ("${FILE#zz}", "a/b/c.tar.gz"),
    ("${PATH/bin/sbin}", "/usr/sbin:/bin"),
    ("${PATH//bin/sbin}", "/usr/sbin:/sbin"),
    ("${XXX/a/b}", ""),
    ("${SPACED}", "a  b"),
    ("caf\u00e9$SHELL", "caf\u00e9bash"),
])
def test_process_word(word: str, want: str | None) -> None:
    if want is None:
        with pytest.raises(ExpansionError):
            expand(word, ENV)
    else:
        assert expand(word, ENV) == want


@pytest.mark.parametrize("word,message", [
    ("he${XXX:YYY}", "unsupported modifier (Y) in substitution"),
    ("he${XXX?}", "XXX: is not allowed to be unset"),
    ("he${XXX:?}", "XXX: is not allowed to be unset"),
    ("he${NULL:?}", "NULL: is not allowed to be empty"),
    ("${XXX:?need it}", "XXX: need it"),
    ("${XXX?need it}", "XXX: need it"),
    ("he${}", "syntax error: bad substitution"),
    ("${:}", "syntax error: bad substitution"),
    ("${{x}", "syntax error: bad substitution"),
    ("${", "syntax error: missing '}'"),
    ("${PWD", "syntax error: missing '}'"),
    ("${PWD:-x", "syntax error: missing '}'"),
    ("${PWD x}", "unsupported modifier ( ) in substitution"),
    ("'abc", "unexpected end of statement while looking for matching single-quote"),
    ('"abc', "unexpected end of statement while looking for matching double-quote"),
])
def test_expansion_errors(word: str, message: str) -> None:
    with pytest.raises(ExpansionError) as info:
        expand(word, ENV)
    assert info.value.reason == message
    quoted = word.replace('"', '\\"')
    assert str(info.value) == f'failed to process "{quoted}": {message}'


@pytest.mark.parametrize("word,want", [
    ("80 443", ["80", "443"]),
    ("$SPACED", ["a", "b"]),
    ('"$SPACED"', ["a  b"]),
    ("'a b' c", ["a b", "c"]),
    ("a\\ b c", ["a b", "c"]),
    ("${NULL}", []),
    ('""', []),
    ("x${NULL}y", ["xy"]),
    ("  lead  trail  ", ["lead", "trail"]),
])
def test_process_words(word: str, want: list[str]) -> None:
    assert expand_words(word, ENV) == want


def test_backtick_escape_token() -> None:
    assert expand("C:\\path`$PWD", ENV, escape="`") == "C:\\path$PWD"
    assert expand('"a`"b"', ENV, escape="`") == 'a"b'
    assert expand("a\\$PWD", ENV, escape="`") == "a\\/home"


def test_raw_and_skip_unset_modes() -> None:
    raw = Lexer(raw_quotes=True)
    assert raw.process_word("'a b'\"c\"", ENV) == "'a b'\"c\""
    skip = Lexer(skip_unset=True)
    assert skip.process_word("$XXX ${XXX} ${XXX:-d} $PWD", ENV) == "$XXX ${XXX} ${XXX:-d} /home"


def test_matches_report_used_and_missing_names() -> None:
    result = Lexer().process_word_with_matches("$PWD ${XXX:-a} $SHELL", ENV)
    assert result.value == "/home a bash"
    assert result.matched == {"PWD", "SHELL"}
    assert result.unmatched == {"XXX"}


@pytest.mark.parametrize("body,want", [
    ("hello $SHELL\n", "hello bash\n"),
    ("'$SHELL' \"$PWD\"\n", "'bash' \"/home\"\n"),
    ("printf 'a\\n' \\$HOME\n", "printf 'a\\n' $HOME\n"),
    ("${XXX:-dflt} ${PWD}\n", "dflt /home\n"),
    ("cost: 5$\n", "cost: 5$\n"),
])
def test_heredoc_body(body: str, want: str) -> None:
    assert expand_heredoc(body, ENV) == want


_plain = st.text(alphabet=st.characters(exclude_characters="$'\"\\", exclude_categories=["Cs"]))


@given(_plain)
def test_plain_text_is_unchanged(text: str) -> None:
    assert expand(text, ENV) == text


@given(st.text(alphabet=st.characters(exclude_characters="'", exclude_categories=["Cs"])))
def test_single_quotes_keep_everything_literal(text: str) -> None:
    assert expand(f"'{text}'", ENV) == text


@given(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True), _plain)
def test_default_applies_exactly_when_unset_or_empty(name: str, default: str) -> None:
    env = {"SET": "v", "EMPTY": ""}
    word = "${" + name + ":-" + default.replace("}", "") + "}"
    want = env.get(name) or default.replace("}", "")
    assert expand(word, env) == want
