"""Compose interpolation, as a table against the spec's examples."""

from __future__ import annotations

import pytest

from berth.compose.errors import ComposeError
from berth.compose.interpolate import interpolate, substitute

ENV = {"SET": "value", "EMPTY": "", "OTHER": "other"}


@pytest.mark.parametrize(("text", "expected"), [
    ("plain", "plain"),
    ("$SET", "value"),
    ("${SET}", "value"),
    ("a${SET}b", "avalueb"),
    ("$SET-x", "value-x"),
    ("${UNSET}", ""),
    ("$UNSET", ""),
    ("${UNSET:-default}", "default"),
    ("${EMPTY:-default}", "default"),
    ("${SET:-default}", "value"),
    ("${UNSET-default}", "default"),
    ("${EMPTY-default}", ""),
    ("${SET:+repl}", "repl"),
    ("${EMPTY:+repl}", ""),
    ("${EMPTY+repl}", "repl"),
    ("${UNSET+repl}", ""),
    ("$$", "$"),
    ("$${SET}", "${SET}"),
    ("$$SET", "$SET"),
    ("${UNSET:-${OTHER}}", "other"),
    ("${UNSET:-${ALSO_UNSET:-deep}}", "deep"),
    ("${UNSET:-a ${SET} b}", "a value b"),
    ("${UNSET:-}", ""),
    ("cost: 5$", "cost: 5$"),
    ("${SET:?must}", "value"),
])
def test_substitute(text: str, expected: str) -> None:
    assert substitute(text, ENV) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("${UNSET:?set it}", "required variable UNSET is missing a value: set it"),
    ("${UNSET?set it}", "required variable UNSET is missing a value: set it"),
    ("${EMPTY:?no empty}", "required variable EMPTY is empty: no empty"),
    ("${UNSET:?}", "required variable UNSET is missing a value: variable UNSET is not set"),
    ("${UNSET:?need ${SET}}", "need value"),
    ("${SET", "unclosed"),
    ("${1BAD}", "invalid interpolation format"),
    ("${SET:x}", "invalid interpolation format"),
])
def test_errors(text: str, message: str) -> None:
    with pytest.raises(ComposeError, match="^where: .*" + message.replace("$", r"\$").replace("{", r"\{")):
        substitute(text, ENV, "where")


def test_optional_error_does_not_fire_when_set_but_empty() -> None:
    assert substitute("${EMPTY?x}", ENV) == ""


def test_document_walk_names_file_and_path() -> None:
    doc = {"services": {"web": {"image": "${SET}", "ports": ["${UNSET:-80}:80"], "x": 5}}}
    assert interpolate(doc, ENV, "f.yml") == {"services": {"web": {"image": "value", "ports": ["80:80"], "x": 5}}}
    with pytest.raises(ComposeError) as err:
        interpolate({"services": {"web": {"environment": ["A=${NOPE:?gone}"]}}}, ENV, "/p/compose.yaml")
    assert str(err.value) == ("/p/compose.yaml: services.web.environment[0]: "
                              "required variable NOPE is missing a value: gone")


def test_keys_are_not_interpolated() -> None:
    assert interpolate({"${SET}": "$SET"}, ENV, "f") == {"${SET}": "value"}
