"""The builder beyond the basics: ONBUILD, ADD <url>, RUN --mount, parallel stages, --cache-from,
builder prune and df, and the stream details docker-py's own build tests check."""

from __future__ import annotations

import email.utils
import hashlib
import http.server
import io
import json
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from ..conftest import Daemon

HEADERS = {"Content-Type": "application/x-tar"}


def _context(files: dict[str, str | bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            raw = data.encode() if isinstance(data, str) else data
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(raw))
    return buf.getvalue()


def build(d: Daemon, files: dict[str, str | bytes], query: str = "") -> list[dict[str, Any]]:
    status, out = d.request("POST", "/build?" + query, _context(files), HEADERS, timeout=120)
    assert status == 200, out
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def text(msgs: list[dict[str, Any]]) -> str:
    return "".join(m.get("stream", "") for m in msgs)


def image_id(msgs: list[dict[str, Any]]) -> str:
    ids = [m["aux"]["ID"] for m in msgs if "aux" in m]
    assert ids, text(msgs) + json.dumps(msgs[-1])
    return str(ids[-1])


def run(d: Daemon, image: str, *cmd: str) -> str:
    c = d.json("POST", "/containers/create", {"Image": image, "Cmd": list(cmd)})
    assert isinstance(c, dict)
    try:
        d.json("POST", f"/containers/{c['Id']}/start")
        d.json("POST", f"/containers/{c['Id']}/wait")
        status, out = d.request("GET", f"/containers/{c['Id']}/logs?stdout=1&stderr=1")
        assert status == 200
        # drop the 8-byte stream headers of the multiplexed log
        data, i = b"", 0
        while i + 8 <= len(out):
            n = int.from_bytes(out[i + 4:i + 8], "big")
            data += out[i + 8:i + 8 + n]
            i += 8 + n
        return data.decode()
    finally:
        d.request("DELETE", f"/containers/{c['Id']}?force=1")


@pytest.fixture
def tag() -> str:
    return f"bf-{uuid.uuid4().hex[:8]}"


def test_stream_details_docker_py_checks(berthd: Daemon, tag: str) -> None:
    # A failing RUN: stderr in red, then errorDetail with the exit code.
    msgs = build(berthd, {"Dockerfile": "FROM busybox\nRUN echo oops >&2; exit 3\n"}, "nocache=1")
    assert "\x1b[91moops\n\x1b[0m" in [m.get("stream") for m in msgs]
    assert msgs[-1]["errorDetail"]["code"] == 3 and "non-zero code: 3" in msgs[-1]["error"]
    # docker-py sends `dockerfile` twice for one outside the context: its name, then its text.
    msgs = build(berthd, {".dockerfile.x": "FROM busybox\nLABEL where=outside\n"},
                 "dockerfile=.dockerfile.x&dockerfile=FROM+busybox")
    assert "Successfully built" in text(msgs)
    # repeated extrahosts all reach RUN's /etc/hosts
    msgs = build(berthd, {"Dockerfile": "FROM busybox\nRUN cat /etc/hosts > /hosts\n"},
                 "nocache=1&extrahosts=one.test:127.0.0.2&extrahosts=two.test:127.0.0.3&t=" + tag)
    hosts = run(berthd, tag, "cat", "/hosts")
    assert "127.0.0.2\tone.test" in hosts and "127.0.0.3\ttwo.test" in hosts
    # labels given to a bare FROM scratch still make an image
    msgs = build(berthd, {"Dockerfile": "FROM scratch\n"}, "labels=" + quote(json.dumps({"test": "OK"})))
    inspect = berthd.json("GET", f"/images/{image_id(msgs)}/json")
    assert isinstance(inspect, dict) and inspect["Config"]["Labels"] == {"test": "OK"}
    # an ignore file that names itself and the Dockerfile: both read, neither copied
    msgs = build(berthd, {"Dockerfile": "FROM busybox\nCOPY . /test\n", ".dockerignore": ".dockerignore\nDockerfile\n",
                          "kept": "k"}, "t=" + tag)
    assert run(berthd, tag, "find", "/test", "-type", "f").split() == ["/test/kept"]
    # -q: the ID alone, as a stream line; the tag is still applied
    msgs = build(berthd, {"Dockerfile": "FROM busybox\nENV QUIET=1\n"}, f"q=1&t={tag}:quiet")
    assert len(msgs) == 1 and msgs[0]["stream"].startswith("sha256:"), msgs
    assert berthd.json("GET", f"/images/{tag}:quiet/json")
    status, out = berthd.request("POST", "/build?squash=1", _context({"Dockerfile": "FROM busybox\n"}), HEADERS)
    assert status == 400 and b"experimental" in out


def test_cache_from_limits_reuse_to_the_named_images(berthd: Daemon, tag: str) -> None:
    files: dict[str, str | bytes] = {"Dockerfile": f"FROM busybox\nENV FOO={tag}\nRUN touch baz\nRUN touch bax\n"}
    build(berthd, files, f"t={tag}:1")
    hits = text(build(berthd, files, "cachefrom=" + quote(json.dumps([f"{tag}:1"])))).count("Using cache")
    assert hits == 3
    # named images that do not exist: nothing may be reused
    assert "Using cache" not in text(build(berthd, files, "cachefrom=" + quote(json.dumps(["nosuchtag"]))))


def test_onbuild_triggers_run_in_the_child(berthd: Daemon, tag: str) -> None:
    parent = "FROM busybox\nONBUILD RUN echo triggered > /t\nONBUILD ENV FROM_TRIGGER=1\n"
    build(berthd, {"Dockerfile": parent}, f"t={tag}:base")
    base = berthd.json("GET", f"/images/{tag}:base/json")
    assert isinstance(base, dict) and base["Config"]["OnBuild"] == ["RUN echo triggered > /t", "ENV FROM_TRIGGER=1"]
    msgs = build(berthd, {"Dockerfile": f"FROM {tag}:base\nRUN cat /t\n"}, f"t={tag}:child")
    out = text(msgs)
    assert "# Executing 2 build triggers\n" in out and "triggered\n" in out, out
    child = berthd.json("GET", f"/images/{tag}:child/json")
    assert isinstance(child, dict) and not child["Config"]["OnBuild"]
    assert "FROM_TRIGGER=1" in child["Config"]["Env"]


class _Files(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    modified = 1577934245  # 2020-01-02 03:04:05 UTC

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        data = self.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Last-Modified", email.utils.formatdate(self.modified, usegmt=True))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_files() -> Iterator[tuple[str, dict[str, bytes]]]:
    files: dict[str, bytes] = {}
    handler = type("Handler", (_Files,), {"files": files})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", files
    finally:
        server.shutdown()
        server.server_close()


def test_add_url(berthd: Daemon, tag: str, http_files: tuple[str, dict[str, bytes]]) -> None:
    base, files = http_files
    files["/dl/file.txt"] = b"from the web\n"
    dockerfile = f"FROM busybox\nADD {base}/dl/file.txt /d/\nADD {base}/dl/file.txt /renamed\n"
    build(berthd, {"Dockerfile": dockerfile}, f"t={tag}")
    out = run(berthd, tag, "sh", "-c", "stat -c '%a %Y %s' /d/file.txt /renamed; cat /d/file.txt")
    assert out == "600 1577934245 13\n600 1577934245 13\nfrom the web\n", out
    # same content: cache hits; new content at the same URL: the step runs again
    assert text(build(berthd, {"Dockerfile": dockerfile})).count("Using cache") == 2
    files["/dl/file.txt"] = b"changed\n"
    assert text(build(berthd, {"Dockerfile": dockerfile})).count("Using cache") == 0
    good = "sha256:" + hashlib.sha256(b"changed\n").hexdigest()
    msgs = build(berthd, {"Dockerfile": f"FROM busybox\nADD --checksum={good} {base}/dl/file.txt /c\n"})
    assert "Successfully built" in text(msgs)
    msgs = build(berthd, {"Dockerfile": f"FROM busybox\nADD --checksum=sha256:{'0' * 64} {base}/dl/file.txt /c\n"})
    assert "digest mismatch" in msgs[-1]["error"]
    msgs = build(berthd, {"Dockerfile": f"FROM busybox\nADD {base}/missing /m\n"})
    assert "404" in msgs[-1]["error"]


def test_run_mounts_cache_bind_tmpfs_secret_and_prune(berthd: Daemon, tag: str) -> None:
    cache_id = f"c-{tag}"
    dockerfile = f"""\
FROM busybox AS other
RUN echo from-stage > /o.txt
FROM busybox
WORKDIR /w
RUN --mount=type=cache,id={cache_id},target=/cache echo x >> /cache/log && wc -l < /cache/log > /count
RUN --mount=type=bind,source=src,target=s cp s/a.txt /copied && touch s/ro 2>/dev/null || echo read-only
RUN --mount=type=bind,from=other,source=/o.txt,target=/o.txt cp /o.txt /o-copied
RUN --mount=type=tmpfs,target=/t,size=1m touch /t/scratch && grep -q ' /t tmpfs' /proc/mounts
RUN --mount=type=secret,id=optional ls /run/secrets/optional || true
"""
    files: dict[str, str | bytes] = {"Dockerfile": dockerfile, "src/a.txt": "one"}
    out = text(build(berthd, files, f"t={tag}"))
    assert "read-only" in out, out
    listing = run(berthd, tag, "sh", "-c", "cat /count /copied /o-copied; ls -d /cache /w/s /t /o.txt 2>&1")
    lines = listing.splitlines()  # /copied has no newline: "one" runs into /o-copied's line
    assert lines[:2] == ["1", "onefrom-stage"], listing
    # mount points the image did not have are not left in it
    assert len(lines) == 6 and all("No such file" in line for line in lines[2:]), listing
    # the bound file's content is part of the key: an edit reruns that step (and the cache
    # mount kept its content across builds)
    files["src/a.txt"] = "two"
    build(berthd, files, f"t={tag}:2&nocache=1")
    assert run(berthd, f"{tag}:2", "cat", "/count", "/copied") == "2\ntwo"
    # a required secret cannot come through the legacy API
    msgs = build(berthd, {"Dockerfile": "FROM busybox\nRUN --mount=type=secret,id=tok,required cat /run/secrets/tok\n"})
    assert "secret tok" in msgs[-1]["error"]
    # the cache mount is build cache: df lists it, builder prune empties it
    df = berthd.json("GET", "/system/df")
    assert isinstance(df, dict) and any(c["Type"] == "exec.cachemount" for c in df["BuildCache"]), df
    pruned = berthd.json("POST", "/build/prune")
    assert isinstance(pruned, dict) and pruned["CachesDeleted"] and pruned["SpaceReclaimed"] > 0, pruned
    build(berthd, files, f"t={tag}:3")
    assert run(berthd, f"{tag}:3", "cat", "/count") == "1\n"


def test_independent_stages_build_at_once(berthd: Daemon) -> None:
    # Each stage waits (up to 10 s) for the other's mark in a shared cache mount: built one after
    # the other, the first would time out.
    sync = f"sync-{uuid.uuid4().hex[:8]}"
    wait = ("--mount=type=cache,id={id},target=/sync touch /sync/{me} && "
            "for i in $(seq 100); do [ -f /sync/{other} ] && exit 0; sleep 0.1; done; exit 1")
    dockerfile = f"""\
FROM busybox AS a
RUN {wait.format(id=sync, me="a", other="b")}
RUN echo a > /a
FROM busybox AS b
RUN {wait.format(id=sync, me="b", other="a")}
RUN echo b > /b
FROM busybox
COPY --from=a /a /a
COPY --from=b /b /b
"""
    t0 = time.monotonic()
    msgs = build(berthd, {"Dockerfile": dockerfile}, "nocache=1")
    elapsed = time.monotonic() - t0
    out = text(msgs)
    assert "Successfully built" in out, out + json.dumps(msgs[-1])
    # the stream still reads in order: steps 1..9, each stage's lines together
    numbers = [int(line.split()[1].split("/")[0]) for line in out.splitlines() if line.startswith("Step ")]
    assert numbers == list(range(1, 10))
    assert out.index("Step 4/9") < out.index("Step 5/9") and elapsed < 10


def test_parent_links_intermediate_images_and_rmi(berthd: Daemon, tag: str) -> None:
    msgs = build(berthd, {"Dockerfile": f"FROM busybox\nENV P={tag}\nRUN echo x > /x\nCMD [\"cat\", \"/x\"]\n"},
                 f"t={tag}")
    final = image_id(msgs)
    busybox = berthd.json("GET", "/images/busybox/json")
    assert isinstance(busybox, dict)
    # each step's image points at the one before it, down to the base
    chain = [final]
    while chain[-1] != busybox["Id"] and len(chain) < 10:
        inspect = berthd.json("GET", f"/images/{chain[-1]}/json")
        assert isinstance(inspect, dict) and inspect["Parent"], inspect
        chain.append(inspect["Parent"])
    assert len(chain) == 4  # CMD, RUN, ENV, busybox
    history = berthd.json("GET", f"/images/{tag}/history")
    assert isinstance(history, list) and [h["Id"] for h in history[:4]] == chain
    # intermediate steps are listed by `images -a` only
    listed = {i["Id"] for i in berthd.json("GET", "/images/json")}  # type: ignore[union-attr]
    listed_all = {i["Id"] for i in berthd.json("GET", "/images/json?all=1")}  # type: ignore[union-attr]
    assert final in listed and not set(chain[1:3]) & listed and set(chain) <= listed_all
    # an image others were built on cannot go, even forced (dockerd's hard conflict)...
    for force in ("0", "1"):
        status, out = berthd.request("DELETE", f"/images/{chain[1]}?force={force}")
        assert status == 409 and b"(cannot be forced) - image has dependent child images" in out, out
    # ...and removing a tag of it only untags it
    berthd.json("POST", f"/images/{chain[1]}/tag?repo={tag}&tag=parent")
    assert berthd.json("DELETE", f"/images/{tag}:parent") == [{"Untagged": f"{tag}:parent"}]
    # rmi of the final image takes its unused intermediate steps along, never the base
    deleted = [r.get("Deleted") for r in berthd.json("DELETE", f"/images/{tag}")]  # type: ignore[union-attr]
    assert set(chain[:3]) <= set(deleted) and busybox["Id"] not in deleted
    # a commit's image has the container's image as Parent
    c = berthd.json("POST", "/containers/create", {"Image": "busybox", "Cmd": ["true"]})
    assert isinstance(c, dict)
    try:
        committed = berthd.json("POST", f"/commit?container={c['Id']}")
        assert isinstance(committed, dict)
        inspect = berthd.json("GET", f"/images/{committed['Id']}/json")
        assert isinstance(inspect, dict) and inspect["Parent"] == busybox["Id"]
    finally:
        berthd.request("DELETE", f"/containers/{c['Id']}?force=1")
    berthd.request("DELETE", f"/images/{committed['Id']}")
