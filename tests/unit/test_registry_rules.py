"""Pure rules of the registry server: names, pagination, byte ranges, manifest parsing, htpasswd."""

from __future__ import annotations

import base64
import json

import pytest

from berth.registry.server import manifests as mf
from berth.registry.server.auth import parse_basic, parse_htpasswd
from berth.registry.server.errors import RegistryError
from berth.registry.server.names import check_digest, check_name, check_tag, is_digest_reference, paginate
from berth.registry.server.ranges import Unsatisfiable, parse_range

D1 = "sha256:" + "a" * 64
D2 = "sha256:" + "b" * 64


@pytest.mark.parametrize("name", ["a", "library/busybox", "a-b/c.d/e__f", "x" * 10 + "/y1", "a--b"])
def test_valid_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "A", "a/", "/a", "a//b", "_a", "a_", "a/_layers", "a..b", "x" * 256])
def test_invalid_names(name: str) -> None:
    with pytest.raises(RegistryError) as e:
        check_name(name)
    assert e.value.code == "NAME_INVALID" and e.value.status == 400


def test_tags_and_digests() -> None:
    assert check_tag("v1.0_rc-1") == "v1.0_rc-1"
    for bad in ("-x", ".x", "a" * 129, "a:b", ""):
        with pytest.raises(RegistryError):
            check_tag(bad)
    assert check_digest("sha512:" + "0" * 128)[0] == "sha512"
    for bad in ("sha256:abc", "md5:" + "0" * 32, "sha256:" + "A" * 64):
        with pytest.raises(RegistryError) as e:
            check_digest(bad)
        assert e.value.code == "DIGEST_INVALID"
    assert is_digest_reference(D1) and is_digest_reference("sha256:short") and not is_digest_reference("latest")


def test_paginate() -> None:
    items = ["c", "a", "b", "d"]
    assert paginate(items, None, None) == (["a", "b", "c", "d"], False)
    assert paginate(items, 2, None) == (["a", "b"], True)
    assert paginate(items, 2, "b") == (["c", "d"], False)
    assert paginate(items, 0, None) == ([], False)
    assert paginate(items, 10, "d") == ([], False)


@pytest.mark.parametrize("header,want", [
    (None, None), ("bytes=0-9", (0, 9)), ("bytes=5-", (5, 99)), ("bytes=-10", (90, 99)),
    ("bytes=50-500", (50, 99)), ("bytes=-1000", (0, 99)), ("items=0-1", None), ("bytes=0-1,5-6", None),
    ("bytes=x-1", None),
])
def test_parse_range(header: str | None, want: tuple[int, int] | None) -> None:
    assert parse_range(header, 100) == want


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=50-10", "bytes=-0", "bytes=200-300"])
def test_unsatisfiable_range(header: str) -> None:
    with pytest.raises(Unsatisfiable):
        parse_range(header, 100)


def _image(**extra: object) -> dict:
    return {"schemaVersion": 2, "mediaType": mf.OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": D1, "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": D2, "size": 3}],
            **extra}


def test_parse_image_manifest() -> None:
    p = mf.parse(json.dumps(_image()).encode(), mf.OCI_MANIFEST)
    assert p.media_type == mf.OCI_MANIFEST and p.blobs == [D1, D2] and p.children == [] and p.subject is None
    assert p.artifact_type == "application/vnd.oci.empty.v1+json"  # the config's type, per the spec


def test_parse_subject_and_artifact_type() -> None:
    doc = _image(artifactType="application/x-sig", subject={"mediaType": mf.OCI_MANIFEST, "digest": D2, "size": 1},
                 annotations={"k": "v"})
    p = mf.parse(json.dumps(doc).encode(), None)
    assert p.subject == D2 and p.artifact_type == "application/x-sig"
    assert p.referrer_descriptor(D1, 10) == {"mediaType": mf.OCI_MANIFEST, "digest": D1, "size": 10,
                                             "artifactType": "application/x-sig", "annotations": {"k": "v"}}


def test_foreign_layers_need_not_be_present() -> None:
    doc = _image()
    doc["layers"][0]["urls"] = ["https://example.com/layer"]
    assert mf.parse(json.dumps(doc).encode(), None).blobs == [D1]


def test_parse_index_and_media_type_rules() -> None:
    index = {"schemaVersion": 2, "manifests": [{"mediaType": mf.OCI_MANIFEST, "digest": D1, "size": 5}]}
    p = mf.parse(json.dumps(index).encode(), mf.OCI_INDEX)
    assert p.media_type == mf.OCI_INDEX and p.children == [D1]
    assert mf.parse(json.dumps(index).encode(), None).media_type == mf.OCI_INDEX  # by its shape
    with pytest.raises(RegistryError):  # Content-Type and mediaType disagree
        mf.parse(json.dumps(_image()).encode(), mf.DOCKER_MANIFEST)
    for bad in (b"[]", b"{", json.dumps({"schemaVersion": 1}).encode(),
                json.dumps(_image(config={"digest": "sha256:zz", "size": 1})).encode(),
                json.dumps(dict(_image(), mediaType="application/x-unknown")).encode()):
        with pytest.raises(RegistryError) as e:
            mf.parse(bad, None)
        assert e.value.code == "MANIFEST_INVALID"


def test_htpasswd_and_basic_parsing() -> None:
    users = parse_htpasswd("# comment\nalice:$2y$05$abc\nbob:{SHA}xyz\n\ncarol:$2b$10$def\n")
    assert set(users) == {"alice", "carol"}  # only bcrypt entries count
    header = "Basic " + base64.b64encode(b"alice:pa:ss").decode()
    assert parse_basic(header) == ("alice", "pa:ss")
    assert parse_basic("Bearer x") is None and parse_basic("Basic !!!") is None and parse_basic(None) is None
