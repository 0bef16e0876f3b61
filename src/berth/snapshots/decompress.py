"""The uncompressed bytes of a layer or image stream: plain, gzip, zstd, xz or bzip2, recognised
by magic bytes as docker does, read lazily."""

from __future__ import annotations

import bz2
import gzip
import importlib
import io
import lzma
from typing import BinaryIO, cast

from berth.common.errors import InvalidParameter

from .layerformat import CHUNK

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_XZ_MAGIC = b"\xfd7zXZ\x00"
_BZIP2_MAGIC = b"BZh"


class _Prefixed(io.RawIOBase):
    """`rest` with `head` (bytes already read from it to sniff the format) put back in front."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(b))
        n = len(data)
        b[:n] = data
        return n


def _read_upto(stream: BinaryIO, n: int) -> bytes:
    """Up to n bytes; a pipe may return fewer per read before EOF."""
    parts: list[bytes] = []
    got = 0
    while got < n:
        data = stream.read(n - got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


def _zstd_reader(src: BinaryIO) -> BinaryIO:
    # The PEP 784 API (stdlib from 3.14, backports.zstd before) first, then python-zstandard.
    for name in ("compression.zstd", "backports.zstd"):
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        return cast(BinaryIO, mod.ZstdFile(src, "rb"))
    try:
        zstandard = importlib.import_module("zstandard")
    except ImportError:
        raise InvalidParameter(
            "the stream is zstd-compressed but no zstd module is installed "
            "(install backports.zstd or zstandard)") from None
    return cast(BinaryIO, zstandard.ZstdDecompressor().stream_reader(src, read_across_frames=True))


def _gzip_reader(src: BinaryIO) -> BinaryIO:
    # isal's igzip decompresses several times faster than zlib; the bytes out are the same.
    try:
        igzip = importlib.import_module("isal.igzip")
    except ImportError:
        return cast(BinaryIO, gzip.GzipFile(fileobj=src, mode="rb"))
    return cast(BinaryIO, igzip.GzipFile(fileobj=src, mode="rb"))


def open_decompressed(stream: BinaryIO) -> BinaryIO:
    """The uncompressed bytes of `stream`, which may be plain or gzip, zstd, xz or bzip2 compressed
    (recognised by magic bytes, as docker does). Reads lazily; never holds the whole stream."""
    head = _read_upto(stream, 6)
    src = cast(BinaryIO, io.BufferedReader(_Prefixed(head, stream), CHUNK))
    if head.startswith(_GZIP_MAGIC):
        return _gzip_reader(src)
    if head.startswith(_ZSTD_MAGIC):
        return _zstd_reader(src)
    if head.startswith(_XZ_MAGIC):
        return cast(BinaryIO, lzma.LZMAFile(src, "rb"))
    if head.startswith(_BZIP2_MAGIC) and len(head) > 3 and head[3:4] in b"123456789":
        return cast(BinaryIO, bz2.BZ2File(src, "rb"))
    return src

