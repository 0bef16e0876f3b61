"""Lexical cleaning of relative paths found in archives (tar entries, manifest references)."""


class EscapingPath(ValueError):
    """The path is absolute or climbs above its root; the message says which."""


def clean_relative(name: str) -> tuple[str, ...]:
    """Components of `name` with `.` and `..` resolved lexically, never leaving the root."""
    if name.startswith("/"):
        raise EscapingPath("is absolute")
    parts: list[str] = []
    for comp in name.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if not parts:
                raise EscapingPath("leaves the root")
            parts.pop()
        else:
            parts.append(comp)
    return tuple(parts)
