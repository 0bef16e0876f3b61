"""Classic Swarm's expression grammar, table by table: parsing, matching, and the labels they live in."""

from __future__ import annotations

import json

import pytest

from berth.cluster.scheduler import InvalidExpression, extract_placement, parse_expr
from berth.cluster.scheduler.expr import AFFINITIES_LABEL, CONSTRAINTS_LABEL, RESCHEDULE_LABEL, Op


@pytest.mark.parametrize(
    ("text", "key", "op", "value", "soft"),
    [
        ("type==frontend", "type", Op.EQ, "frontend", False),
        ("type!=frontend", "type", Op.NE, "frontend", False),
        ("type==~frontend", "type", Op.EQ, "frontend", True),
        ("type!=~frontend", "type", Op.NE, "frontend", True),
        ("Region==us-east", "region", Op.EQ, "us-east", False),  # keys are case-insensitive
        ("node==node-1", "node", Op.EQ, "node-1", False),
        ("storagedriver==overlay2", "storagedriver", Op.EQ, "overlay2", False),
        ("kernelversion==6.1*", "kernelversion", Op.EQ, "6.1*", False),
        ("operatingsystem==Debian GNU/Linux 12 (bookworm)", "operatingsystem", Op.EQ,
         "Debian GNU/Linux 12 (bookworm)", False),
        ("type==/front.*/", "type", Op.EQ, "/front.*/", False),
        ("type==~/front.*/", "type", Op.EQ, "/front.*/", True),
        ("com.example.role==web", "com.example.role", Op.EQ, "web", False),
        ("node.labels.type == frontend", "type", Op.EQ, "frontend", False),  # compose's spelling
        ("node.labels.type != db", "type", Op.NE, "db", False),
        ("engine.labels.storage==ssd", "storage", Op.EQ, "ssd", False),
        ("node.hostname == n1", "node", Op.EQ, "n1", False),
        ("container==a", "container", Op.EQ, "a", False),
        ("image==busybox:latest", "image", Op.EQ, "busybox:latest", False),
        ("image==~redis", "image", Op.EQ, "redis", True),
        ("port==8080", "port", Op.EQ, "8080", False),
    ],
)
def test_parse(text: str, key: str, op: Op, value: str, soft: bool) -> None:
    e = parse_expr(text)
    assert (e.key, e.op, e.value, e.soft) == (key, op, value, soft)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("type=frontend", "One of operator ==, != is expected"),
        ("typefrontend", "One of operator ==, != is expected"),
        ("==frontend", "Key '' is invalid"),
        ("t==x", "Key 't' is invalid"),  # Swarm wanted keys of two characters or more
        ("1type==x", "Key '1type' is invalid"),
        ("ty pe==x", "Key 'ty pe' is invalid"),
        ("type==", "Value '' is invalid"),
        ("type==~", "Value '~' is invalid"),
        ("type==a{1}", "Value 'a{1}' is invalid"),
        ("type==a,b", "Value 'a,b' is invalid"),
        ("type==/a(/", "not a valid regular expression"),
    ],
)
def test_parse_rejects(text: str, message: str) -> None:
    with pytest.raises(InvalidExpression, match=message.replace("(", r"\(").replace("{", r"\{")):
        parse_expr(text)


def test_invalid_expression_is_a_400() -> None:
    with pytest.raises(InvalidExpression) as info:
        parse_expr("nope")
    assert info.value.status == 400


@pytest.mark.parametrize(
    ("text", "candidates", "expected"),
    [
        ("key==frontend", ["frontend"], True),
        ("key==frontend", ["frontend2"], False),  # globs are anchored
        ("key==frontend", ["Frontend"], False),  # values are case-sensitive
        ("key!=frontend", ["frontend"], False),
        ("key!=frontend", ["db"], True),
        ("key!=frontend", [""], True),  # a node without the label
        ("key==frontend", [""], False),
        ("key==front*", ["frontend"], True),
        ("key==*end", ["frontend"], True),
        ("key==f*d", ["frontend"], True),
        ("key==f*d", ["frontends"], False),
        ("key==*", [""], True),
        ("key==fr?ntend", ["frontend"], True),
        ("key==fr?ntend", ["frntend"], False),
        ("key==6.1*", ["6.1.0-18-amd64"], True),
        ("key==6.1*", ["6x1.0"], False),  # outside /.../ a dot is a dot
        ("key==/front/", ["my-frontend-1"], True),  # regexes are unanchored
        ("key==/^front/", ["my-frontend-1"], False),
        ("key==/^(front|back)end$/", ["backend"], True),
        ("key==/[0-9]+/", ["rack12"], True),
        ("key==/[0-9]+/", ["rack"], False),
        ("key!=/db/", ["mydb"], False),
        ("key!=/db/", ["web"], True),
        ("key==/a.c/", ["xabcx"], True),
        ("key==~front*", ["frontend"], True),
        ("key!=~front*", ["frontend"], False),
        ("container==a", ["id1", "b", "id2", "a"], True),  # any candidate matches
        ("container!=a", ["id1", "b", "id2", "a"], False),  # != means none matches
        ("container!=a", [], True),
        ("container==a", [], False),
    ],
)
def test_matches(text: str, candidates: list[str], expected: bool) -> None:
    assert parse_expr(text).matches(*candidates) is expected


@pytest.mark.parametrize(
    ("text", "shown"),
    [("type==frontend", "type==frontend"), ("type!=~db", "type!=~db"), ("Node.Labels.Zone == a*", "zone==a*")],
)
def test_str(text: str, shown: str) -> None:
    assert str(parse_expr(text)) == shown


def test_extract_moves_env_entries_into_labels() -> None:
    p = extract_placement(
        ["PATH=/bin", "constraint:type==frontend", "affinity:container==a", "constraint:zone!=b",
         "reschedule:on-node-failure", "FOO=constraint:x"],
        {"app": "web"},
    )
    assert p.env == ("PATH=/bin", "FOO=constraint:x")
    assert p.constraints == ("type==frontend", "zone!=b")
    assert p.affinities == ("container==a",)
    assert p.reschedule_policies == ("on-node-failure",)
    assert json.loads(p.labels[CONSTRAINTS_LABEL]) == ["type==frontend", "zone!=b"]
    assert json.loads(p.labels[AFFINITIES_LABEL]) == ["container==a"]
    assert json.loads(p.labels[RESCHEDULE_LABEL]) == ["on-node-failure"]
    assert p.labels["app"] == "web"


def test_extract_reads_back_from_labels_and_appends_env() -> None:
    labels = {CONSTRAINTS_LABEL: json.dumps(["region==us-east"]), AFFINITIES_LABEL: json.dumps(["image==redis"])}
    p = extract_placement(["constraint:storage==ssd"], labels)
    assert p.constraints == ("region==us-east", "storage==ssd")
    assert p.affinities == ("image==redis",)
    assert p.env == ()
    # Round trip: what was stored reads back the same with no env at all.
    again = extract_placement([], p.labels)
    assert (again.constraints, again.affinities) == (p.constraints, p.affinities)


@pytest.mark.parametrize("raw", ["not json", '{"a": 1}', ""])
def test_extract_ignores_unreadable_labels(raw: str) -> None:
    p = extract_placement([], {CONSTRAINTS_LABEL: raw})
    assert p.constraints == ()


def test_extract_without_placement_adds_no_labels() -> None:
    p = extract_placement(["A=1"], {})
    assert p.labels == {} and p.env == ("A=1",)
