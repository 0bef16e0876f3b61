"""Stage 2: the environment interpolation sees: the process environment over `.env`/`--env-file`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from berth.compose.errors import ComposeError


def read_env_file(path: Path) -> dict[str, str | None]:
    """KEY=VALUE lines as python-dotenv reads them (quotes, `export`, comments); no interpolation
    against the process environment, so a file means the same wherever it is read."""
    from dotenv import dotenv_values

    if not path.is_file():
        raise ComposeError(f"env file {path} not found")
    return dict(dotenv_values(path, interpolate=True))


def project_environment(project_dir: Path, env_files: Sequence[str], environ: Mapping[str, str]) -> dict[str, str]:
    """`--env-file`s in order (later wins), else `<project dir>/.env` if present; the process environment wins."""
    merged: dict[str, str] = {}
    paths = [Path(p) if Path(p).is_absolute() else Path.cwd() / p for p in env_files]
    if not paths and (project_dir / ".env").is_file():
        paths = [project_dir / ".env"]
    for path in paths:
        for key, value in read_env_file(path).items():
            merged[key] = value if value is not None else ""
    merged.update(environ)
    return merged
