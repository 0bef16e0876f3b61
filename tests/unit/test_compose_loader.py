"""The whole loader pipeline on files in a temporary directory: no daemon."""

from __future__ import annotations

from pathlib import Path

import pytest

from berth.compose.errors import ComposeError
from berth.compose.loader import LoadOptions, load_project
from berth.compose.validate import validate


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def _load(root: Path, environ: dict[str, str] | None = None, **kw: object) -> object:
    return load_project(LoadOptions(cwd=root, environ=environ or {}, **kw))  # type: ignore[arg-type]


def test_validation_names_file_path_and_expectation(tmp_path: Path) -> None:
    _write(tmp_path, {"compose.yaml": "services:\n  web:\n    image: busybox\n    ports: 80\n"})
    with pytest.raises(ComposeError) as err:
        _load(tmp_path)
    assert f"{tmp_path}/compose.yaml: services.web.ports: must be an array, got integer 80" in str(err.value)


@pytest.mark.parametrize(("doc", "message"), [
    ({"services": {"web": {"image": "b", "bogus": 1}}}, "services.web: additional property 'bogus' is not allowed"),
    ({"services": {"web": {"image": "b", "restart": 3}}}, "services.web.restart: must be a string"),
    ({"services": {"web": {"image": "b", "depends_on": {"db": {"condition": "later"}}}}},
     "services.web.depends_on.db.condition: must be one of service_started"),
    ({"volumes": {"v": {"driver": 5}}, "services": {}}, "volumes.v.driver: must be a string, got integer 5"),
    ({"servicez": {}}, "(top level): additional property 'servicez' is not allowed"),
])
def test_validation_messages(doc: dict, message: str) -> None:
    with pytest.raises(ComposeError) as err:
        validate(doc, "f.yml")
    assert f"f.yml: {message}" in str(err.value)


def test_extension_fields_are_allowed() -> None:
    validate({"x-any": {"a": 1}, "services": {"web": {"image": "b", "x-note": "n"}}}, "f.yml")


def test_project_name_precedence(tmp_path: Path) -> None:
    root = tmp_path / "My_Dir.X"
    _write(root, {"compose.yaml": "name: fromfile\nservices: {web: {image: b}}\n"})
    assert _load(root, project_name="cli").name == "cli"  # type: ignore[attr-defined]
    assert _load(root, {"COMPOSE_PROJECT_NAME": "envname"}).name == "envname"  # type: ignore[attr-defined]
    assert _load(root).name == "fromfile"  # type: ignore[attr-defined]
    (root / "compose.yaml").write_text("services: {web: {image: b}}\n")
    assert _load(root).name == "my_dirx"  # type: ignore[attr-defined]
    with pytest.raises(ComposeError, match="invalid project name 'Bad Name'"):
        _load(root, project_name="Bad Name")


def test_dotenv_env_file_and_process_environment(tmp_path: Path) -> None:
    _write(tmp_path, {
        ".env": "TAG=1.0\nFROM_DOTENV=yes\n",
        "other.env": "TAG=2.0\n",
        "svc.env": "A=from-file\nB=from-file\n",
        "compose.yaml": "services:\n  web:\n    image: busybox:${TAG}\n    env_file: svc.env\n"
                        "    environment: {B: inline, C: null, D: '${FROM_DOTENV:-no}'}\n",
    })
    p = _load(tmp_path, {"C": "from-shell"})
    web = p.services["web"].config  # type: ignore[attr-defined]
    assert web["image"] == "busybox:1.0"
    assert web["environment"] == {"A": "from-file", "B": "inline", "C": "from-shell", "D": "yes"}
    p = _load(tmp_path, env_files=[str(tmp_path / "other.env")])
    assert p.services["web"].config["image"] == "busybox:2.0"  # type: ignore[attr-defined]
    assert _load(tmp_path, {"TAG": "shell"}).services["web"].image == "busybox:shell"  # type: ignore[attr-defined]


def test_several_files_merge_and_paths_resolve_against_the_first(tmp_path: Path) -> None:
    _write(tmp_path, {
        "compose.yaml": "services:\n  web:\n    image: a\n    environment: [X=1]\n    volumes: [./data:/d]\n",
        "sub/override.yaml": "services:\n  web:\n    image: b\n    environment: {Y: 2}\n    build: ./ctx\n",
    })
    p = _load(tmp_path, files=["compose.yaml", "sub/override.yaml"])
    web = p.services["web"].config  # type: ignore[attr-defined]
    assert web["image"] == "b"
    assert web["environment"] == {"X": "1", "Y": "2"}
    assert web["build"]["context"] == str(tmp_path / "ctx")
    assert web["volumes"][0]["source"] == str(tmp_path / "data")


def test_extends_same_file_and_other_file(tmp_path: Path) -> None:
    _write(tmp_path, {
        "common/base.yaml": "services:\n  base:\n    image: busybox\n    build: .\n    environment: {A: base}\n",
        "compose.yaml": "services:\n  mid:\n    extends: {file: common/base.yaml, service: base}\n"
                        "    environment: {B: mid}\n"
                        "  web:\n    extends: mid\n    environment: {A: web}\n    command: echo hi\n",
    })
    p = _load(tmp_path)
    web = p.services["web"].config  # type: ignore[attr-defined]
    assert web["environment"] == {"A": "web", "B": "mid"}
    assert web["command"] == ["echo", "hi"]
    assert web["build"]["context"] == str(tmp_path / "common")
    assert "extends" not in web


def test_extends_cycle_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path, {"compose.yaml": "services:\n  a: {image: b, extends: b}\n  b: {image: b, extends: a}\n"})
    with pytest.raises(ComposeError, match="circular extends"):
        _load(tmp_path)


def test_include(tmp_path: Path) -> None:
    _write(tmp_path, {
        "db/compose.yaml": "services:\n  db:\n    image: 'db:${DBTAG}'\n    volumes: [dbdata:/var]\n"
                           "volumes:\n  dbdata: {}\n",
        "db/.env": "DBTAG=15\n",
        "compose.yaml": "include: [db/compose.yaml]\nservices:\n  web: {image: w, depends_on: [db]}\n",
    })
    p = _load(tmp_path)
    assert set(p.services) == {"db", "web"}  # type: ignore[attr-defined]
    assert p.services["db"].image == "db:15"  # type: ignore[attr-defined]
    assert p.volumes["dbdata"].name == f"{p.name}_dbdata"  # type: ignore[attr-defined]


def test_include_conflict(tmp_path: Path) -> None:
    _write(tmp_path, {"inc.yaml": "services: {web: {image: a}}\n",
                      "compose.yaml": "include: [inc.yaml]\nservices: {web: {image: b}}\n"})
    with pytest.raises(ComposeError, match="service 'web' is already defined"):
        _load(tmp_path)


def test_profiles(tmp_path: Path) -> None:
    _write(tmp_path, {"compose.yaml": "services:\n  web: {image: a}\n  debug: {image: b, profiles: [dev]}\n"})
    assert set(_load(tmp_path).services) == {"web"}  # type: ignore[attr-defined]
    assert set(_load(tmp_path, profiles=["dev"]).services) == {"web", "debug"}  # type: ignore[attr-defined]
    assert set(_load(tmp_path, {"COMPOSE_PROFILES": "dev"}).services) == {"web", "debug"}  # type: ignore[attr-defined]


def test_undefined_references(tmp_path: Path) -> None:
    _write(tmp_path, {"compose.yaml": "services:\n  web: {image: a, volumes: ['data:/d']}\n"})
    with pytest.raises(ComposeError, match="undefined volume 'data'"):
        _load(tmp_path)
    (tmp_path / "compose.yaml").write_text("services:\n  web: {image: a, depends_on: [db]}\n")
    with pytest.raises(ComposeError, match="depends on undefined service 'db'"):
        _load(tmp_path)
    (tmp_path / "compose.yaml").write_text("services:\n  web: {image: a, networks: [front]}\n")
    with pytest.raises(ComposeError, match="undefined network 'front'"):
        _load(tmp_path)


def test_config_output_roundtrips(tmp_path: Path) -> None:
    _write(tmp_path, {"compose.yaml": "x-common: &c {restart: always}\nservices:\n  web:\n    <<: *c\n"
                                      "    command: echo $$HOME\n    image: a\n    ports: ['8080:80']\n    networks: [front]\n"
                                      "networks:\n  front: {}\n"})
    p = _load(tmp_path, project_name="demo")
    text = p.to_yaml()  # type: ignore[attr-defined]
    (tmp_path / "out.yaml").write_text(text)
    again = _load(tmp_path, files=["out.yaml"])
    assert again.to_dict() == p.to_dict()  # type: ignore[attr-defined]
    assert again.networks["front"].name == "demo_front"  # type: ignore[attr-defined]


def test_file_secrets_and_configs(tmp_path: Path) -> None:
    from berth.compose.convert import file_mounts

    _write(tmp_path, {"pw.txt": "s3cret", "app.conf": "x=1",
                      "compose.yaml": "services:\n  web:\n    image: a\n    secrets: [pw]\n"
                                      "    configs: [{source: conf, target: /etc/app.conf}]\n"
                                      "secrets:\n  pw: {file: ./pw.txt}\nconfigs:\n  conf: {file: app.conf}\n"})
    p = _load(tmp_path)
    assert file_mounts(p, p.services["web"]) == [  # type: ignore[attr-defined]
        {"Type": "bind", "Source": str(tmp_path / "pw.txt"), "Target": "/run/secrets/pw", "ReadOnly": True},
        {"Type": "bind", "Source": str(tmp_path / "app.conf"), "Target": "/etc/app.conf", "ReadOnly": True}]
    (tmp_path / "compose.yaml").write_text("services:\n  web: {image: a, secrets: [nope]}\n")
    with pytest.raises(ComposeError, match="undefined secret 'nope'"):
        _load(tmp_path)
