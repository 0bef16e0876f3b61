"""Which files make the project, and the project's name, without the rest of the loader.

`ps`, `ls`-style commands only need the name to filter the engine's labels; resolving it here
keeps ruamel and jsonschema (about 70 ms of imports) off their path. Imports only the standard
library; YAML is parsed only when a file may set a top-level `name:`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from berth.compose.errors import ComposeError

DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
# A top-level `name:` key (block style at column 0, maybe quoted), or something that could hide one
# (a flow-style document, a merge key): only then is the file parsed for its name.
_MAY_NAME = re.compile(r"""^(?:["']?name["']?\s*:|\{|<<)""", re.M)


def find_files(files: Sequence[str], env: Mapping[str, str], cwd: Path, project_directory: str | None) -> list[Path]:
    """`-f` files, else COMPOSE_FILE, else the first default file in the directory or its parents."""
    names = list(files)
    if not names and env.get("COMPOSE_FILE"):
        names = env["COMPOSE_FILE"].split(env.get("COMPOSE_PATH_SEPARATOR", os.pathsep))
    if names:
        return [Path(n) if Path(n).is_absolute() else cwd / n for n in names]
    directory = (cwd / project_directory) if project_directory else cwd
    while True:
        for name in DEFAULT_FILES:
            if (directory / name).is_file():
                return [directory / name]
        if directory.parent == directory:
            break
        directory = directory.parent
    raise ComposeError(f"no configuration file provided: none of {', '.join(DEFAULT_FILES)} "
                       f"found in {cwd} or its parents")


def normalize_project_name(name: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "", name.lower())


def check_project_name(name: str, source: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name):
        raise ComposeError(f"invalid project name {name!r} (from {source}): it must contain only lowercase "
                           "letters, digits, dashes and underscores, and start with a letter or digit")
    return name


def project_name(project_name: str | None, env: Mapping[str, str], file_name: str | None, project_dir: Path) -> str:
    """The spec's precedence: `-p`, COMPOSE_PROJECT_NAME, the files' `name:`, the directory."""
    if project_name:
        return check_project_name(project_name, "-p")
    if env.get("COMPOSE_PROJECT_NAME"):
        return check_project_name(env["COMPOSE_PROJECT_NAME"], "COMPOSE_PROJECT_NAME")
    if file_name:
        return check_project_name(file_name, "the `name:` field")
    name = normalize_project_name(project_dir.name)
    if not name:
        raise ComposeError(f"cannot derive a project name from directory {project_dir}; use -p")
    return name


def quick_project_name(files: Sequence[str], name: str | None, project_directory: str | None,
                       env_files: Sequence[str], environ: Mapping[str, str], cwd: Path) -> str:
    """The name `load_project` would give, reading only what decides it (no validation)."""
    if name:
        return check_project_name(name, "-p")
    from berth.compose.envfile import project_environment

    first_guess = Path(project_directory) if project_directory else None
    env = project_environment(first_guess or cwd, env_files, environ) if (env_files or first_guess) \
        else dict(environ)
    paths = find_files(files, env, cwd, project_directory)
    project_dir = (first_guess or paths[0].parent).resolve()
    env = project_environment(project_dir, env_files, environ)
    if env.get("COMPOSE_PROJECT_NAME"):
        return project_name(None, env, None, project_dir)
    file_name = None
    for path in paths:  # a later file's `name:` overrides an earlier one's, as the merge does
        try:
            text = path.read_text()
        except OSError as exc:
            raise ComposeError(f"{path}: cannot read: {exc.strerror or exc}") from exc
        if _MAY_NAME.search(text):
            from berth.compose.interpolate import substitute
            from berth.compose.yamlfile import parse_yaml

            value = parse_yaml(text, str(path)).get("name")
            if value is not None:
                file_name = substitute(str(value), env, f"{path}: name")
    return project_name(None, env, file_name, project_dir)
