"""The registry's access policy and its HS256 tokens: pure logic."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from berth.registry.server.policy import (
    OpenPolicy,
    PolicyError,
    PolicyFile,
    Scope,
    grant,
    parse,
    parse_scope,
)
from berth.registry.server.tokens import Signer, TokenInvalid

POLICY = parse("""{"rules": [
  {"users": ["alice"], "repositories": ["team/*", "deep/**"], "actions": ["pull", "push"]},
  {"users": ["*"], "repositories": ["team/*"], "actions": ["pull"]},
  {"users": ["anonymous"], "repositories": ["pub/*"], "actions": ["pull"]},
  {"users": ["root"], "repositories": ["**"], "actions": ["*", "catalog"]}
]}""")


@pytest.mark.parametrize("user,repo,want", [
    ("alice", "team/app", {"pull", "push"}),
    ("alice", "team/app/sub", set()),  # `*` stays within one component
    ("alice", "deep/a/b/c", {"pull", "push"}),
    ("bob", "team/app", {"pull"}),
    ("bob", "pub/x", {"pull"}),  # what anonymous may, a logged-in user may
    ("", "pub/x", {"pull"}),
    ("", "team/app", set()),
    ("root", "any/thing", {"pull", "push", "delete"}),
])
def test_allowed(user: str, repo: str, want: set[str]) -> None:
    assert POLICY.allowed(user, "repository", repo) == want


def test_catalog_and_grant() -> None:
    assert POLICY.allowed("root", "registry", "catalog") == {"*"}
    assert POLICY.allowed("alice", "registry", "catalog") == set()
    assert grant(POLICY, "bob", Scope("repository", "team/app", ("pull", "push"))) == Scope(
        "repository", "team/app", ("pull",))
    assert grant(POLICY, "bob", Scope("repository", "other/app", ("pull",))) is None
    assert grant(POLICY, "root", Scope("repository", "x", ("*",))) == Scope("repository", "x",
                                                                             ("pull", "push", "delete"))
    assert OpenPolicy().allowed("", "repository", "x") == set()
    assert OpenPolicy().allowed("u", "repository", "x") == {"pull", "push", "delete"}


def test_parse_scope() -> None:
    assert parse_scope("repository:a/b:pull,push") == Scope("repository", "a/b", ("pull", "push"))
    assert parse_scope("repository(plugin):a:pull") == Scope("repository", "a", ("pull",))
    assert parse_scope("registry:catalog:*") == Scope("registry", "catalog", ("*",))
    assert parse_scope("nonsense") is None


@pytest.mark.parametrize("text", ['[]', '{"rules": {}}', '{"rules": [{"users": "a", "actions": []}]}',
                                  '{"rules": [{"users": ["a"], "actions": ["fly"]}]}', 'nope'])
def test_bad_policies(text: str) -> None:
    with pytest.raises(PolicyError):
        parse(text)


def test_tokens_round_trip_and_refusals() -> None:
    signer = Signer(b"k" * 32, "iss", "svc", ttl=60)
    tok, ttl = signer.issue("alice", [Scope("repository", "a", ("pull",))], now=1000)
    got = signer.verify(tok, now=1010)
    assert ttl == 60 and got.subject == "alice" and got.actions("repository", "a") == {"pull"}
    with pytest.raises(TokenInvalid):
        signer.verify(tok, now=1000 + 60 + 31)  # expired, past the leeway
    with pytest.raises(TokenInvalid):
        Signer(b"j" * 32, "iss", "svc").verify(tok, now=1010)  # another key
    with pytest.raises(TokenInvalid):
        Signer(b"k" * 32, "iss", "other").verify(tok, now=1010)  # another service
    with pytest.raises(TokenInvalid):
        signer.verify(tok[:-2] + ("AA" if not tok.endswith("AA") else "BB"), now=1010)
    with pytest.raises(TokenInvalid):
        signer.verify("a.b", now=1010)


def test_policy_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text('{"rules": [{"users": ["bob"], "repositories": ["a/*"], "actions": ["pull"]}]}')
    pol = PolicyFile(str(path))
    assert pol.allowed("bob", "repository", "a/x") == {"pull"}
    path.write_text('{"rules": [{"users": ["bob"], "repositories": ["a/*"], "actions": ["pull", "push"]}]}')
    os.utime(path, (1, 1))  # a new mtime even within the filesystem's timestamp granularity
    assert pol.allowed("bob", "repository", "a/x") == {"pull", "push"}
    path.write_text("{not json")
    os.utime(path, (2, 2))
    assert pol.allowed("bob", "repository", "a/x") == {"pull", "push"}  # the last good rules stay
    with pytest.raises(PolicyError):
        PolicyFile(str(path))  # but a bad file at start is an error
