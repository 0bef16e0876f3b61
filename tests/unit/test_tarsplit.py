"""Tar-split: a layer applied with a split record rebuilds its tar byte for byte from its files,
whatever the tar held (long names, PAX, links, nodes, whiteouts, the same path written twice, a
directory replaced, sparse files, trailing blocks), and refuses a layer whose files changed."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from berth.common.errors import SystemError_
from berth.snapshots.overlay import LayerStore
from berth.snapshots.tarapply import apply_layer
from berth.snapshots.tarsplit import STASH_DIR, open_split

from .test_tarapply import dev, dir_, hard, make_tar, reg, sym

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: mknod, lchown, trusted xattrs")


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def roundtrip(tmp: Path, data: bytes, stream: bytes | None = None) -> bytes:
    """Apply `stream` (default: `data`) with a split record; return the tar rebuilt from it."""
    layer = tmp / "layer"
    shutil.rmtree(layer, ignore_errors=True)
    layer.mkdir()
    applied = apply_layer(io.BytesIO(data if stream is None else stream), str(layer / "diff"),
                          split_dir=str(layer))
    assert applied.diff_id == digest(data)
    assert applied.tar_size == len(data)
    with open_split(str(layer), str(layer / "diff"), applied.diff_id) as f:
        out = f.read()
    with open_split(str(layer), str(layer / "diff"), applied.diff_id) as f:
        small = b"".join(iter(lambda: f.read(777), b""))  # a reader taking odd-sized pieces
    assert small == out
    return out


def test_every_kind_of_entry(tmp_path: Path) -> None:
    long_dir = "d/" + "x" * 120
    data = make_tar([
        dir_("d"), reg("d/empty"), reg("d/one", b"1"), reg("d/block", b"b" * 512),
        reg("d/block+1", os.urandom(513)), reg("d/big", os.urandom((1 << 20) + 3)),
        dir_(long_dir), reg(long_dir + "/" + "y" * 150, b"long name"),
        reg("d/xattr", b"x", pax={"SCHILY.xattr.user.k": "v"}),
        reg("d/é-ünïcode", b"utf-8 name"),
        sym("d/link", "one"), hard("d/hard", "d/one"),
        dev("d/null", tarfile.CHRTYPE, 1, 3), dev("d/fifo", tarfile.FIFOTYPE, 0, 0),
        reg("d/.wh.gone"), reg("d/.wh..wh..opq"),
    ])
    assert roundtrip(tmp_path, data) == data


def test_gnu_format_and_trailing_blocks(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        info = tarfile.TarInfo("g/" + "n" * 200)
        body = os.urandom(3000)
        info.size = len(body)
        tf.addfile(info, io.BytesIO(body))
    data = buf.getvalue() + b"\0" * 4096 + b"not a tar, still hashed"
    assert roundtrip(tmp_path, data) == data


def test_compressed_input_rebuilds_the_uncompressed_tar(tmp_path: Path) -> None:
    data = make_tar([reg("a", os.urandom(70000)), reg("b", b"bee")])
    assert roundtrip(tmp_path, data, stream=gzip.compress(data)) == data


def test_empty_layer(tmp_path: Path) -> None:
    assert roundtrip(tmp_path, b"") == b""


def test_replaced_and_removed_files_keep_their_bytes(tmp_path: Path) -> None:
    data = make_tar([
        reg("same", b"first"), reg("same", b"second, longer"),  # the same path twice
        dir_("tree"), reg("tree/a", b"aaa"), dir_("tree/sub"), reg("tree/sub/b", b"bbb"),
        reg("tree", b"a file where the directory was"),  # removes tree/ and what it held
        reg("lnk-target", b"shared"), hard("lnk", "lnk-target"), reg("lnk-target", b"new"),
        reg("later-whited", b"w"), reg(".wh.later-whited"),
    ])
    assert roundtrip(tmp_path, data) == data
    layer = tmp_path / "layer"
    assert sorted(os.listdir(layer / STASH_DIR)) == ["0", "2", "3", "5", "7"]  # refs 1, 4 and 6 stay
    assert (layer / "diff" / "same").read_bytes() == b"second, longer"
    assert (layer / "diff" / "lnk").read_bytes() == b"shared"


@pytest.mark.skipif(shutil.which("tar") is None, reason="needs GNU tar for a sparse archive")
def test_gnu_sparse_file(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "sparse", "wb") as f:
        f.write(b"head")
        f.seek(5 << 20)
        f.write(b"tail")
    (src / "plain").write_bytes(b"plain")
    tar = tmp_path / "s.tar"
    subprocess.run(["tar", "-C", str(src), "--sparse", "--format=gnu", "-cf", str(tar), "sparse", "plain"],
                   check=True)
    data = tar.read_bytes()
    assert roundtrip(tmp_path, data) == data
    assert (tmp_path / "layer" / "diff" / "sparse").stat().st_size == (5 << 20) + 4


def test_changed_files_are_refused(tmp_path: Path) -> None:
    data = make_tar([reg("f", b"original"), reg("g", b"longer original")])
    layer = tmp_path / "layer"
    layer.mkdir()
    applied = apply_layer(io.BytesIO(data), str(layer / "diff"), split_dir=str(layer))
    (layer / "diff" / "f").write_bytes(b"0riginal")  # same size, other bytes
    with pytest.raises(SystemError_, match="changed on disk"), \
            open_split(str(layer), str(layer / "diff"), applied.diff_id) as f:
        f.read()
    (layer / "diff" / "g").write_bytes(b"short")
    with pytest.raises(SystemError_, match="shorter"), \
            open_split(str(layer), str(layer / "diff"), applied.diff_id) as f:
        f.read()


def test_layer_store_keeps_the_split_with_the_layer(tmp_path: Path) -> None:
    store = LayerStore(str(tmp_path / "layers"))
    data = make_tar([dir_("etc"), reg("etc/hostname", b"box\n")])
    chain, applied = store.apply(None, io.BytesIO(data), expected_diff_id=digest(data))
    assert store.has_tar(chain)
    with store.open_tar(chain, applied.diff_id) as f:
        assert f.read() == data


_names = st.sampled_from(["a", "b", "d", "d/a", "d/b", "d/e", "d/e/a"])


@st.composite
def _entries(draw: st.DrawFn) -> bytes:
    entries = []
    for _ in range(draw(st.integers(1, 12))):
        name = draw(_names)
        kind = draw(st.sampled_from(["reg", "dir", "sym", "wh"]))
        parent = name.rsplit("/", 1)[0] if "/" in name else None
        if parent:
            entries.append(dir_(parent))
        if kind == "reg":
            entries.append(reg(name, draw(st.binary(max_size=1500))))
        elif kind == "dir":
            entries.append(dir_(name))
        elif kind == "sym":
            entries.append(sym(name, "elsewhere"))
        else:
            base = name.rsplit("/", 1)
            entries.append(reg("/".join([*base[:-1], ".wh." + base[-1]])))
    return make_tar(entries)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_entries())
def test_any_sequence_of_entries_rebuilds(tmp_path: Path, data: bytes) -> None:
    try:
        rebuilt = roundtrip(tmp_path, data)
    except Exception as e:  # an archive apply refuses (a file where a directory must be) is fine
        if type(e).__name__ in ("InvalidParameter", "UnsafeArchive"):
            return
        raise
    assert rebuilt == data


def test_a_layer_left_without_a_split_gets_one(tmp_path: Path) -> None:
    store = LayerStore(str(tmp_path / "layers"))
    data = make_tar([reg("f", b"first"), reg("f", b"second")])
    chain, applied = store.apply(None, io.BytesIO(data))
    layer = tmp_path / "layers" / chain.split(":")[1]
    (layer / "tar-split").unlink()
    shutil.rmtree(layer / STASH_DIR)
    assert not store.has_tar(chain)
    store.apply(None, io.BytesIO(data))
    with store.open_tar(chain, applied.diff_id) as f:
        assert f.read() == data
