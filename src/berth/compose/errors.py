"""The one error type of the compose package: a message a user can act on (it names the place)."""

from __future__ import annotations


class ComposeError(Exception):
    """A compose file, environment or project problem; `str()` is the whole user-facing message."""
