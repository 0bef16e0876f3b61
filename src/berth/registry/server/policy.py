"""Who may do what: the access policy file (`--policy FILE`) and the scopes clients ask for.

The file is JSON, a list of rules; a user gets the union of the actions of every rule naming
them (or `*`, any logged-in user; `anonymous`, everyone, even without credentials):

    {"rules": [
      {"users": ["alice"], "repositories": ["alice/*", "team/**"], "actions": ["pull", "push"]},
      {"users": ["*"], "repositories": ["team/**"], "actions": ["pull"]},
      {"users": ["anonymous"], "repositories": ["public/*"], "actions": ["pull"]},
      {"users": ["admin"], "repositories": ["**"], "actions": ["*", "catalog"]}
    ]}

Repository patterns are globs over the path: `*` stays within a component, `**` spans any number
of them. Actions are `pull`, `push`, `delete` (`*` is all three) and `catalog` (`/v2/_catalog`).
Without a policy file every logged-in user may do everything, and anonymous requests nothing.
The file is read again when it changes (as the htpasswd file is); a change that does not parse
is logged and the rules before it stay. Pure logic: no I/O but `load` and `PolicyFile`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field

log = logging.getLogger("berth.registry.policy")

REPO_ACTIONS = ("pull", "push", "delete")
ANONYMOUS = "anonymous"
ANY_USER = "*"


class PolicyError(ValueError):
    pass


@dataclass(frozen=True)
class Scope:
    """A token scope: `repository:team/app:pull,push` or `registry:catalog:*`."""

    type: str
    name: str
    actions: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"


def parse_scope(text: str) -> Scope | None:
    """None for a scope this registry has nothing to say about (it is then simply not granted)."""
    kind, sep, rest = text.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not (sep and sep2 and name):
        return None
    kind = kind.split("(", 1)[0]  # `repository(plugin)` is a repository too
    return Scope(kind, name, tuple(a for a in actions.split(",") if a))


def _glob(pattern: str) -> re.Pattern[str]:
    out = ""
    for part in re.split(r"(\*\*|\*)", pattern):
        out += "[^/]*" if part == "*" else ".*" if part == "**" else re.escape(part)
    return re.compile(f"^{out}$")


@dataclass
class Rule:
    users: frozenset[str]
    repositories: list[re.Pattern[str]]
    actions: frozenset[str]

    def applies(self, user: str) -> bool:
        # what anyone may do without logging in, a logged-in user may do too
        if ANONYMOUS in self.users:
            return True
        return bool(user) and (user in self.users or ANY_USER in self.users)


@dataclass
class Policy:
    rules: list[Rule] = field(default_factory=list)

    def allowed(self, user: str, kind: str, name: str) -> set[str]:
        """The actions `user` ('' when anonymous) has on a repository, or on `registry:catalog`."""
        got: set[str] = set()
        for rule in self.rules:
            if not rule.applies(user):
                continue
            if kind == "registry":
                if name == "catalog" and "catalog" in rule.actions:
                    got.add("*")
            elif kind == "repository" and any(p.match(name) for p in rule.repositories):
                got |= set(REPO_ACTIONS) if "*" in rule.actions else rule.actions & set(REPO_ACTIONS)
        return got


class OpenPolicy(Policy):
    """No policy file: a logged-in user may do everything, an anonymous one nothing."""

    def allowed(self, user: str, kind: str, name: str) -> set[str]:
        if not user:
            return set()
        return {"*"} if kind == "registry" else set(REPO_ACTIONS)


def grant(policy: Policy, user: str, scope: Scope) -> Scope | None:
    """The part of `scope` the policy gives `user`: what a token for that scope may carry."""
    have = policy.allowed(user, scope.type, scope.name)
    wanted = scope.actions
    if scope.type == "registry":
        ok = tuple(a for a in wanted if "*" in have)
    else:
        expanded = REPO_ACTIONS if "*" in wanted else wanted
        ok = tuple(a for a in expanded if a in have)
    return Scope(scope.type, scope.name, ok) if ok else None


def parse(text: str) -> Policy:
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise PolicyError(f"policy is not JSON: {e}") from None
    rules_raw = doc.get("rules") if isinstance(doc, dict) else None
    if not isinstance(rules_raw, list):
        raise PolicyError('policy must be an object with a "rules" list')
    rules = []
    for i, r in enumerate(rules_raw):
        if not isinstance(r, dict):
            raise PolicyError(f"rules[{i}]: must be an object")
        users, repos, actions = r.get("users"), r.get("repositories", []), r.get("actions")
        for key, val in (("users", users), ("repositories", repos), ("actions", actions)):
            if not isinstance(val, list) or not all(isinstance(v, str) for v in val):
                raise PolicyError(f"rules[{i}].{key}: must be a list of strings")
        assert isinstance(users, list) and isinstance(repos, list) and isinstance(actions, list)
        unknown = set(actions) - {*REPO_ACTIONS, "*", "catalog"}
        if unknown:
            raise PolicyError(f"rules[{i}].actions: unknown {sorted(unknown)}")
        rules.append(Rule(frozenset(users), [_glob(p) for p in repos], frozenset(actions)))
    return Policy(rules)


def load(path: str) -> Policy:
    with open(path, encoding="utf-8") as f:
        return parse(f.read())


class PolicyFile(Policy):
    """The policy of `path`, read again whenever the file's mtime or size changes."""

    def __init__(self, path: str) -> None:
        super().__init__(load(path).rules)  # a bad file at start is an error, not a warning
        self.path = path
        self._stamp = self._stat()

    def _stat(self) -> tuple[float, int]:
        try:
            st = os.stat(self.path)
        except OSError:
            return (-1.0, -1)
        return (st.st_mtime, st.st_size)

    def allowed(self, user: str, kind: str, name: str) -> set[str]:
        stamp = self._stat()
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self.rules = load(self.path).rules
                log.info("policy %s reloaded", self.path)
            except (OSError, PolicyError) as e:
                log.error("policy %s not reloaded, the earlier rules stay: %s", self.path, e)
        return super().allowed(user, kind, name)
