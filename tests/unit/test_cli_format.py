"""The --format / inspect -f template evaluator against Go template behaviour docker users rely on."""

from __future__ import annotations

import pytest

from berth.cli.format.template import Row, Template, TemplateError, go_json, go_str, render

DATA = {
    "Id": "abc123",
    "Name": "/web",
    "State": {"Running": True, "Pid": 42, "Health": None},
    "Config": {"Labels": {"app": "web", "tier": "front"}, "Env": ["A=1", "B=2"], "Cmd": ["sh", "-c", "x"]},
    "NetworkSettings": {
        "Networks": {"bridge": {"IPAddress": "172.17.0.2"}, "alt": {"IPAddress": "10.0.0.2"}}
    },
    "Empty": [],
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{.Id}}", "abc123"),
        ("id={{.Id}} name={{.Name}}", "id=abc123 name=/web"),
        ("{{.State.Running}}", "true"),
        ("{{.State.Pid}}", "42"),
        ("{{.State.Health}}", "<nil>"),
        ("{{.Missing}}", "<no value>"),
        ("{{.Config.Env}}", "[A=1 B=2]"),
        ("{{.Config.Labels}}", "map[app:web tier:front]"),
        ('{{index .Config.Labels "app"}}', "web"),
        ('{{index .Config.Labels "nope"}}', ""),
        ("{{index .Config.Cmd 1}}", "-c"),
        ("{{json .Config.Cmd}}", '["sh","-c","x"]'),
        ("{{json .State}}", '{"Running":true,"Pid":42,"Health":null}'),
        ('{{json "<a&b>"}}', '"<a&b>"'),
        ("{{range .Config.Env}}[{{.}}]{{end}}", "[A=1][B=2]"),
        ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}", "app=web;tier=front;"),
        ("{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", "10.0.0.2 172.17.0.2 "),
        ("{{range .Empty}}x{{else}}none{{end}}", "none"),
        ("{{if .State.Running}}up{{else}}down{{end}}", "up"),
        ('{{if eq .Name "/db"}}db{{else if .State.Running}}running{{else}}other{{end}}', "running"),
        ("{{if not .State.Running}}down{{end}}", ""),
        ("{{with .State}}{{.Pid}}{{end}}", "42"),
        ("{{.Name | upper}}", "/WEB"),
        ('{{join .Config.Env ","}}', "A=1,B=2"),
        ('{{split "a:b" ":"}}', "[a b]"),
        ("{{len .Config.Env}}", "2"),
        ('{{printf "%s:%d" .Id .State.Pid}}', "abc123:42"),
        ("{{$.Id}}{{range .Config.Env}}-{{$.Id}}{{end}}", "abc123-abc123-abc123"),
        ("a  {{- .Id -}}  b", "aabc123b"),
        ("{{/* a comment */}}x", "x"),
        ("{{(index .Config.Cmd 0) | upper}}", "SH"),
        ("{{lower `RAW`}}", "raw"),
    ],
)
def test_render(template: str, expected: str) -> None:
    assert render(template, DATA) == expected


@pytest.mark.parametrize(
    "template",
    ["{{.Id", "{{if .Id}}x", "{{end}}", "{{nosuchfunc .Id}}", '{{.Id "x"}}x{{ ) }}'],
)
def test_errors(template: str) -> None:
    with pytest.raises(TemplateError):
        render(template, DATA)


def test_field_of_nil_is_an_error() -> None:
    with pytest.raises(TemplateError):
        render("{{.State.Health.Status}}", DATA)


def test_row_methods_take_arguments_and_stay_out_of_json() -> None:
    row = Row({"ID": "abc", "Names": "<web>"}, {"Label": lambda key: {"app": "web"}.get(key, "")})
    assert render('{{.Label "app"}}|{{.Label "x"}}', row) == "web|"
    # A whole row is marshalled as docker's json.Marshal does: HTML characters escaped.
    assert go_json(row) == '{"ID":"abc","Names":"\\u003cweb\\u003e"}'
    assert render("{{json .Names}}", row) == '"<web>"'


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1.5, "1.5"), (100.0, "100"), (1e6, "1e+06"), (123456.0, "123456"), (1e-5, "1e-05"), (-2.25, "-2.25")],
)
def test_floats_print_like_go(value: float, expected: str) -> None:
    assert go_str(value) == expected


def test_template_is_reusable() -> None:
    tmpl = Template("{{.A}}")
    assert [tmpl.render({"A": i}) for i in range(3)] == ["0", "1", "2"]
