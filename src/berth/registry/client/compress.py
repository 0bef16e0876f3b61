"""gzip for layer uploads: isal's igzip when it is installed (~10x zlib), else zlib at level 1.

The output has no name and mtime 0, so the same input and implementation always give the same
bytes; callers still remember the compressed digest per DiffID, because isal and zlib differ.
"""

from __future__ import annotations

import hashlib
import importlib
import zlib
from typing import IO, Any

_fast_zlib: Any
try:  # an accelerator, pinned in pyproject; zlib keeps working without it
    _fast_zlib = importlib.import_module("isal.isal_zlib")
except ImportError:  # pragma: no cover - depends on the host
    _fast_zlib = None

CHUNK = 1 << 20
_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # gzip, deflate, no flags, mtime 0, unix


def implementation() -> str:
    return "isal" if _fast_zlib is not None else "zlib"


def gzip_stream(src: IO[bytes], dst: IO[bytes]) -> tuple[str, int]:
    """Compress `src` into `dst`; returns (sha256 digest, size) of the compressed bytes."""
    if _fast_zlib is not None:
        comp = _fast_zlib.compressobj(1, _fast_zlib.DEFLATED, -15)
    else:
        comp = zlib.compressobj(1, zlib.DEFLATED, -15, 9)
    h = hashlib.sha256()
    size = 0
    crc = 0
    length = 0

    def out(b: bytes) -> None:
        nonlocal size
        if b:
            h.update(b)
            dst.write(b)
            size += len(b)

    out(_HEADER)
    crc32 = _fast_zlib.crc32 if _fast_zlib is not None else zlib.crc32  # isal's: ~4x zlib's here
    while chunk := src.read(CHUNK):
        crc = crc32(chunk, crc)
        length += len(chunk)
        out(comp.compress(chunk))
    out(comp.flush())
    out(crc.to_bytes(4, "little") + (length & 0xFFFFFFFF).to_bytes(4, "little"))
    return "sha256:" + h.hexdigest(), size
