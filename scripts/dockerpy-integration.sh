#!/usr/bin/env bash
# Run docker-py's own integration tests (tests/integration of the public docker/docker-py
# repository) against one engine and print passed/failed/errors/skipped per test file.
#
# docker-py's suite is an independent oracle for the Engine API: running it unchanged against
# dockerd gives the baseline, against berth the figures to compare.  The docker-py checkout is
# never copied into this repository: the tests are extracted into a temporary directory.
#
# Usage: scripts/dockerpy-integration.sh [options] [TEST_FILE...]
#   -H, --host URL         engine to test (default: $DOCKER_HOST, else unix:///var/run/docker.sock)
#   -s, --src DIR          docker-py checkout: a git dir, a repo with .git, or a plain tree
#                          (default: $DOCKERPY_SRC, else /work/.mirror/docker+docker-py/repo)
#   -r, --ref REF          git ref to take the tests from (default: tag 7.2.0 if present, else HEAD)
#   -o, --output FILE      keep the raw pytest output here (default: /tmp/dockerpy-<engine>.txt)
#   -j, --json FILE        per-file counts and per-test outcomes as JSON
#   -d, --diff BASE.json   list tests that passed in BASE.json (e.g. dockerd's) but not now
#   -a, --api-version V    DOCKER_TEST_API_VERSION (default: min(server's API version, 1.45))
#   -t, --timeout SECS     per-test timeout (default 120): a hanging test fails, the run goes on
#   --include-registry     also run the tests that need a registry (pull): they fail unless the
#                          engine has a docker.io mirror (scripts/hub-mirror.py serves one)
#   --include-prune        also run the prune tests: they delete EVERY unused container, volume
#                          or image on the engine, not just the tests' own
#   --no-cleanup           keep containers/images the tests leave behind
#   -k EXPR                passed to pytest -k
#   TEST_FILE...           file names under tests/integration (default: the list below)
#
# Environment: DPY_VENV (default /tmp/dpyvenv): venv with docker==7.2.0 and pytest, made if missing;
#              DOCKER: the docker CLI used to prepare images and clean up (default: docker on PATH).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# The files that exercise containers, exec, images, volumes, networks, health checks and the client
# itself.  The others need things no engine here can provide: swarm (services, nodes, secrets,
# configs, swarm), plugins (Docker Hub), build with a registry, and contexts are tested
# elsewhere.
DEFAULT_FILES=(
    api_container_test.py api_exec_test.py api_image_test.py api_volume_test.py
    models_containers_test.py models_images_test.py models_volumes_test.py
    api_healthcheck_test.py api_client_test.py errors_test.py regression_test.py client_test.py
    models_resources_test.py api_network_test.py models_networks_test.py
)

# Tests that talk to a registry (Docker Hub): no registry is reachable from these machines, so
# they fail on every engine for a reason that says nothing about the engine, unless the engine
# has a mirror with the images they pull (scripts/hub-mirror.py).
REGISTRY_TESTS=(
    api_image_test.py::PullImageTest::test_pull
    api_image_test.py::PullImageTest::test_pull_streaming
    api_image_test.py::ImportImageTest::test_get_load_image
    api_image_test.py::InspectDistributionTest::test_inspect_distribution
    models_images_test.py::ImageCollectionTest::test_list
    models_images_test.py::ImageCollectionTest::test_list_with_repository
    models_images_test.py::ImageCollectionTest::test_pull
    models_images_test.py::ImageCollectionTest::test_pull_multiple
    models_images_test.py::ImageCollectionTest::test_pull_with_sha
    models_images_test.py::ImageCollectionTest::test_pull_with_tag
    models_images_test.py::ImageTest::test_tag_and_remove
    # It expects ImageNotFound from the pull docker-py does after "No such image"; without a
    # registry the daemon answers 500 (DNS failure) instead.
    models_containers_test.py::ContainerCollectionTest::test_run_with_image_that_does_not_exist
)

# Prune tests delete everything unused on the engine, which on a shared daemon includes other
# people's stopped containers, volumes and images.  (PruneImagesTest also needs a registry.)
PRUNE_TESTS=(
    api_container_test.py::PruneTest::test_prune_containers
    api_volume_test.py::TestVolumes::test_prune_volumes
    api_image_test.py::PruneImagesTest::test_prune_images
)

host=${DOCKER_HOST:-unix:///var/run/docker.sock}
src=${DOCKERPY_SRC:-/work/.mirror/docker+docker-py/repo}
venv=${DPY_VENV:-/tmp/dpyvenv}
ref=""
output=""
json_out=""
diff_base=""
api_version=""
timeout=120
include_registry=0
include_prune=0
cleanup=1
kexpr=""
files=()

while (($#)); do
    case $1 in
        -H | --host) host=$2; shift 2 ;;
        -s | --src) src=$2; shift 2 ;;
        -r | --ref) ref=$2; shift 2 ;;
        -o | --output) output=$2; shift 2 ;;
        -j | --json) json_out=$2; shift 2 ;;
        -d | --diff) diff_base=$2; shift 2 ;;
        -a | --api-version) api_version=$2; shift 2 ;;
        -t | --timeout) timeout=$2; shift 2 ;;
        -k) kexpr=$2; shift 2 ;;
        --include-registry) include_registry=1; shift ;;
        --include-prune) include_prune=1; shift ;;
        --no-cleanup) cleanup=0; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *) files+=("$1"); shift ;;
    esac
done
((${#files[@]})) || files=("${DEFAULT_FILES[@]}")

export DOCKER_HOST=$host
docker_cli() { "${DOCKER:-docker}" "$@"; }

if ! server_api=$(docker_cli version --format '{{.Server.APIVersion}}' 2>/dev/null) || [[ -z $server_api ]]; then
    echo "no engine answers at $host" >&2
    exit 1
fi
engine_name=$(docker_cli version --format '{{.Server.Version}}' 2>/dev/null || echo unknown)
if [[ -z $output ]]; then
    case $host in
        *berth*) output=/tmp/dockerpy-berth.txt ;;
        *docker.sock) output=/tmp/dockerpy-dockerd.txt ;;
        *) output=/tmp/dockerpy-$(echo "$host" | tr -c 'a-zA-Z0-9\n' '_').txt ;;
    esac
fi

# docker-py 7.2 speaks 1.45 by default; an older server (dockerd 20.10 is 1.41) rejects newer
# versions, and requires_api_version() skips tests for features above the chosen version.
if [[ -z $api_version ]]; then
    api_version=$(printf '%s\n%s\n' "$server_api" 1.45 | sort -V | head -1)
fi
export DOCKER_TEST_API_VERSION=$api_version

# --- the venv ----------------------------------------------------------------------------------
# docker-py's own pins for its dev extra (pytest 7.4.2, pytest-timeout 2.1.0); paramiko because
# tests/helpers.py imports it, websocket-client for the attach-over-websocket test.
if ! "$venv/bin/python" -c 'import docker, pytest, pytest_timeout, paramiko, websocket' 2>/dev/null \
    || [[ $("$venv/bin/python" -c 'import docker; print(docker.__version__)') != 7.2.0 ]]; then
    echo "preparing $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q docker==7.2.0 pytest==7.4.2 pytest-timeout==2.1.0 \
        paramiko==5.1.0 websocket-client==1.9.2
fi

# --- the tests, in a temporary copy ------------------------------------------------------------
work=$(mktemp -d /tmp/dockerpy-tests.XXXXXX)
trap 'rm -rf "$work"' EXIT
if [[ -d $src/.git || -f $src/HEAD ]]; then
    gitdir=$src
    [[ -d $src/.git ]] && gitdir=$src/.git
    if [[ -z $ref ]]; then
        # The tests of the release that matches the installed docker==7.2.0.
        ref=HEAD
        git --git-dir="$gitdir" rev-parse -q --verify 'refs/tags/7.2.0^{commit}' >/dev/null && ref=7.2.0
    fi
    git --git-dir="$gitdir" archive "$ref" tests pytest.ini | tar -x -C "$work"
    src_desc="$src @ $ref ($(git --git-dir="$gitdir" rev-parse --short "$ref^{commit}"))"
elif [[ -d $src/tests/integration ]]; then
    cp -a "$src/tests" "$work/"
    [[ -f $src/pytest.ini ]] && cp "$src/pytest.ini" "$work/"
    src_desc="$src (work tree)"
else
    echo "no docker-py checkout at $src (set DOCKERPY_SRC or -s)" >&2
    exit 1
fi

# --- the images --------------------------------------------------------------------------------
if ! docker_cli image inspect busybox:latest >/dev/null 2>&1; then
    echo "loading busybox:latest built by mkbusybox.py" >&2
    python3 "$here/mkbusybox.py" -o - | docker_cli load >&2
fi
busybox_id=$(docker_cli image inspect --format '{{.Id}}' busybox:latest)
# alpine stand-in: busybox plus alpine's accounts and directories.  It replaces an alpine tag that
# is missing or is plain busybox (an earlier, simpler stand-in), never a real alpine image.
alpine_id=$(docker_cli image inspect --format '{{.Id}}' alpine:3.10 2>/dev/null || true)
if [[ -z $alpine_id || $alpine_id == "$busybox_id" ]]; then
    echo "loading alpine:3.10 and alpine:latest stand-ins built by mkbusybox.py --alpine-compat" >&2
    if ! python3 "$here/mkbusybox.py" --alpine-compat -t alpine:3.10 -t alpine:latest -o - \
        | docker_cli load >&2; then
        echo "docker load failed: tagging plain busybox as alpine" >&2
        docker_cli tag busybox:latest alpine:3.10
    fi
fi
docker_cli image inspect alpine:latest >/dev/null 2>&1 || docker_cli tag alpine:3.10 alpine:latest
docker_cli image inspect busybox:buildroot-2014.02 >/dev/null 2>&1 \
    || docker_cli tag busybox:latest busybox:buildroot-2014.02

# --- what to leave out -------------------------------------------------------------------------
deselect=()
((include_registry)) || deselect+=("${REGISTRY_TESTS[@]}")
((include_prune)) || deselect+=("${PRUNE_TESTS[@]}")

# Snapshots so that what the tests leave behind (models_* tests do not remove every container
# they run, builds leave intermediate containers and images) can be told from what was there.
before_containers=$(docker_cli ps -aq --no-trunc | sort)
before_images=$(docker_cli images -aq --no-trunc | sort -u)

{
    echo "# docker-py integration tests: $src_desc"
    echo "# engine: $host ($engine_name, API $server_api), DOCKER_TEST_API_VERSION=$api_version"
    echo "# started $(date -u +%FT%TZ)"
} >"$output"

# pytest's --deselect matches node ID prefixes (…::test_pull would also drop
# test_pull_invalid_platform, which needs no registry), so a tiny plugin deselects exact IDs.
cat >"$work/exact_deselect.py" <<'PY'
import os


def pytest_collection_modifyitems(config, items):
    drop = set(os.environ.get("DPY_DESELECT", "").split())
    gone = [item for item in items if item.nodeid.removeprefix("tests/integration/") in drop]
    if gone:
        config.hook.pytest_deselected(items=gone)
        items[:] = [item for item in items if item not in gone]
PY
export DPY_DESELECT="${deselect[*]}"
export PYTHONPATH=$work

cd "$work"
for f in "${files[@]}"; do
    args=(-p no:cacheprovider -p exact_deselect --timeout "$timeout" -rfEs --junitxml "$work/junit-$f.xml")
    [[ -n $kexpr ]] && args+=(-k "$kexpr")
    echo "== $f" | tee -a "$output" >&2
    # One pytest per file: a file that crashes or hangs past the per-test timeout still leaves
    # the other files' counts.  Exit codes 1 (failures) and 5 (nothing collected) are results.
    "$venv/bin/python" -m pytest "${args[@]}" "tests/integration/$f" >>"$output" 2>&1 || true
    tail -1 "$output" >&2
done
echo "# finished $(date -u +%FT%TZ)" >>"$output"

# --- leftovers ---------------------------------------------------------------------------------
# Others may use the same engine at the same time, so only what is clearly the tests' goes:
# containers made during the run from a stand-in name (alpine...) or an image ID (builds, commits),
# and images made during the run that are untagged or carry a name the test sources mention.
# Images are removed without -f, so one still in use by anybody stays.
if ((cleanup)); then
    mapfile -t new_containers < <(comm -13 <(echo "$before_containers") <(docker_cli ps -aq --no-trunc | sort))
    mapfile -t new_images < <(comm -13 <(echo "$before_images") <(docker_cli images -aq --no-trunc | sort -u))
    mine=()
    for c in "${new_containers[@]}"; do
        img=$(docker_cli inspect --format '{{.Config.Image}}' "$c" 2>/dev/null) || continue
        case $img in
            alpine | alpine:* | busybox:buildroot-2014.02 | sha256:*) mine+=("$c") ;;
            *) printf '%s\n' "${new_images[@]}" | grep -qxF -- "$img" && mine+=("$c") ;;
        esac
    done
    if ((${#mine[@]})); then
        echo "removing ${#mine[@]} containers the tests left behind" >&2
        docker_cli rm -f "${mine[@]}" >/dev/null || true
    fi
    removed=0
    # Newest first, so children go before their parents.
    : >"$work/new-images"
    if ((${#new_images[@]})); then
        docker_cli image inspect --format '{{.Created}}|{{.Id}}|{{range .RepoTags}}{{.}},{{end}}' "${new_images[@]}" \
            2>/dev/null | sort -r >"$work/new-images" || true
    fi
    while IFS='|' read -r _ id tags; do
        ok=1
        for t in ${tags//,/ }; do
            grep -rqF -- "${t%:*}" "$work/tests/integration" || ok=0
        done
        if ((ok)) && docker_cli rmi "$id" >/dev/null 2>&1; then
            removed=$((removed + 1))
        fi
    done <"$work/new-images"
    ((removed == 0)) || echo "removed $removed images the tests left behind" >&2
fi

# --- the summary -------------------------------------------------------------------------------
"$venv/bin/python" - "$work" "$output" "$json_out" "$diff_base" "$host" "$engine_name" "$api_version" \
    "${#deselect[@]}" "${files[@]}" <<'PY'
"""Count outcomes per file from the junit XML files pytest wrote."""
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

work, raw, json_out, diff_base, host, engine, api, n_deselected, *files = sys.argv[1:]
per_file: dict[str, dict[str, int]] = {}
outcomes: dict[str, str] = {}
for f in files:
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0, "xfailed": 0}
    path = Path(work) / f"junit-{f}.xml"
    if not path.exists():
        counts["errors"] = -1  # pytest itself did not run to the end
        per_file[f] = counts
        continue
    for case in ET.parse(path).iter("testcase"):
        name = f"{f}::{case.get('classname', '').rpartition('.')[2]}::{case.get('name')}"
        tags = {child.tag for child in case}
        xfail = any(c.tag == "skipped" and c.get("type") == "pytest.xfail" for c in case)
        # A test that fails and then errors in teardown has both: the failure is what counts.
        # An expected failure (xfail) is reported by junit as skipped; it gets its own column.
        outcome = (
            "failed" if "failure" in tags
            else "errors" if "error" in tags
            else "xfailed" if xfail
            else "skipped" if "skipped" in tags
            else "passed"
        )
        counts[outcome] += 1
        outcomes[name] = outcome
    per_file[f] = counts

width = max(len(f) for f in files)
print(f"\ndocker-py integration tests against {host} ({engine}, API {api}); deselect list: {n_deselected}")
print(f"{'file':<{width}}  passed  failed  errors  skipped  xfailed")
total = dict.fromkeys(("passed", "failed", "errors", "skipped", "xfailed"), 0)
for f, c in per_file.items():
    if c["errors"] < 0:
        print(f"{f:<{width}}  pytest did not finish (see {raw})")
        continue
    print(f"{f:<{width}}  {c['passed']:6}  {c['failed']:6}  {c['errors']:6}  {c['skipped']:7}  {c['xfailed']:7}")
    for k in total:
        total[k] += c[k]
print(f"{'total':<{width}}  {total['passed']:6}  {total['failed']:6}  {total['errors']:6}  {total['skipped']:7}  "
      f"{total['xfailed']:7}")
print(f"raw pytest output: {raw}")

if diff_base:
    # Only the files run now: a partial run is not a regression in the files left out.
    base = {t: o for t, o in json.loads(Path(diff_base).read_text())["tests"].items()
            if t.split("::")[0] in files}
    worse = sorted(t for t, o in base.items() if o == "passed" and outcomes.get(t, "missing") != "passed")
    better = sorted(t for t, o in outcomes.items() if o == "passed" and base.get(t) not in (None, "passed"))
    print(f"\nagainst {diff_base}: {len(worse)} passed there but not here, {len(better)} the other way")
    for t in worse:
        print(f"  - {t}: {outcomes.get(t, 'missing')}")
    for t in better:
        print(f"  + {t}: was {base[t]}")

if json_out:
    doc = {"host": host, "engine": engine, "api_version": api, "files": per_file, "total": total,
           "tests": outcomes}
    Path(json_out).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    print(f"wrote {json_out}")
PY
