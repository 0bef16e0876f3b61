"""Tar-split: the bytes of a layer tar that are not its files' contents, so the exact tar (and
with it the DiffID) can be rebuilt from the unpacked layer instead of keeping a second copy.

While a layer is applied, every byte of its tar passes through `TarSource`: header blocks,
padding and the end-of-archive blocks go into the split file as literal runs; a regular file's
contents, written into the layer as they stream past, are recorded as a reference (path, size).
`SplitReader` replays the records, reading the references back from the layer's files, and
checks the rebuilt stream against the DiffID when it ends (docker keeps the same kind of record,
with its tar-split library).

The split file is a zlib stream of records:
  b"L" <u32 n> <n bytes>               n literal bytes
  b"F" <u64 size> <u16 n> <n bytes>    `size` bytes of the layer file at this path (UTF-8,
                                       surrogateescape), relative to the layer's diff directory
Reference records are numbered from 0 in order. A file a later entry of the same tar replaces
or removes still has its bytes in the tar: it is moved first to `<split dir>/stash/<number>`.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import os
import struct
import zlib
from typing import BinaryIO

from berth.common.errors import BerthError, InvalidParameter, SystemError_

from .layerformat import CHUNK

SPLIT_FILE = "tar-split"
STASH_DIR = "stash"

_LITERAL = struct.Struct("<cI")
_FILE = struct.Struct("<cQH")
_LITERAL_FLUSH = 1 << 20


class SplitWriter:
    """Writes the split records of one tar into `<dir>/tar-split`."""

    def __init__(self, directory: str) -> None:
        self.dir = directory
        self._f = open(os.path.join(directory, SPLIT_FILE), "wb")
        self._z = zlib.compressobj(1)
        self._literal = bytearray()
        self.refs = 0

    def literal(self, data: bytes | memoryview) -> None:
        self._literal += data
        if len(self._literal) >= _LITERAL_FLUSH:
            self._flush_literal()

    def file(self, path: str, size: int) -> int:
        """Record that the next `size` bytes are the contents of `path`; returns its number."""
        self._flush_literal()
        name = path.encode("utf-8", "surrogateescape")
        self._f.write(self._z.compress(_FILE.pack(b"F", size, len(name)) + name))
        self.refs += 1
        return self.refs - 1

    def stash_dir(self) -> str:
        path = os.path.join(self.dir, STASH_DIR)
        os.makedirs(path, exist_ok=True)
        return path

    def _flush_literal(self) -> None:
        if self._literal:
            self._f.write(self._z.compress(_LITERAL.pack(b"L", len(self._literal))))
            self._f.write(self._z.compress(self._literal))
            self._literal.clear()

    def close(self) -> None:
        if not self._f.closed:
            self._flush_literal()
            self._f.write(self._z.flush())
            self._f.close()


class TarSource:
    """The uncompressed tar as tarfile reads it (headers, a block at a time) and as the extractor
    copies file contents (in large chunks, straight into the file). Hashes and counts every
    byte, turns decompressor failures into clean errors and, given a `SplitWriter`, records the
    tar's layout. Seeks only forward (tarfile skips what it does not read)."""

    def __init__(self, src: BinaryIO, split: SplitWriter | None = None) -> None:
        self._src = src
        self._split = split
        self._hash = hashlib.sha256()
        self._buf = memoryview(b"")
        self.pos = 0  # bytes consumed
        self.count = 0  # bytes read from the stream (and hashed)

    def _pull(self, n: int) -> bytes:
        try:
            data = self._src.read(n)
        except OSError as e:
            if e.errno is not None:  # a real I/O error of the underlying stream
                raise
            raise InvalidParameter(f"layer stream is corrupt: {e}") from e
        except (EOFError, ValueError, zlib.error, lzma.LZMAError) as e:
            raise InvalidParameter(f"layer stream is corrupt or truncated: {e}") from e
        except Exception as e:  # zstd modules have their own error classes
            if isinstance(e, BerthError):
                raise
            raise InvalidParameter(f"layer stream is corrupt: {e}") from e
        self._hash.update(data)
        self.count += len(data)
        return data

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = [self.read(CHUNK)]
            while parts[-1]:
                parts.append(self.read(CHUNK))
            return b"".join(parts)
        if not self._buf:
            self._buf = memoryview(self._pull(max(n, CHUNK)))
        data = bytes(self._buf[:n])
        self._buf = self._buf[len(data):]
        self.pos += len(data)
        if self._split is not None:
            self._split.literal(data)
        return data

    def tell(self) -> int:
        return self.pos

    def seek(self, target: int, whence: int = io.SEEK_SET) -> int:
        if whence != io.SEEK_SET or target < self.pos:
            raise io.UnsupportedOperation("a layer stream only seeks forward")
        while self.pos < target:
            if not self.read(min(CHUNK, target - self.pos)):
                break
        return self.pos

    def copy_to(self, fd: int, size: int, ref: str | None = None) -> int:
        """Write the next `size` bytes into `fd`; `ref`: they are the contents of that layer file,
        recorded by reference instead of literally. Returns the bytes copied (short at EOF)."""
        split = self._split
        if split is not None and ref is not None:
            split.file(ref, size)
            split = None
        remaining = size
        while remaining:
            if self._buf:
                view = self._buf[:remaining]
                self._buf = self._buf[len(view):]
            else:
                view = memoryview(self._pull(min(CHUNK, remaining)))
                if not view:
                    break
            remaining -= len(view)
            self.pos += len(view)
            if split is not None:
                split.literal(view)
            while view:
                view = view[os.write(fd, view):]
        return size - remaining

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


class SplitReader(io.RawIOBase):
    """The layer tar rebuilt from its split records and its diff directory; raises at the end if
    what was rebuilt does not hash to `diff_id` (the layer's files changed on disk)."""

    def __init__(self, split_dir: str, diff_dir: str, diff_id: str) -> None:
        super().__init__()
        self._diff = diff_dir
        self._diff_id = diff_id
        stash = os.path.join(split_dir, STASH_DIR)
        self._stash = stash if os.path.isdir(stash) else None
        self._split = open(os.path.join(split_dir, SPLIT_FILE), "rb")
        self._z = zlib.decompressobj()
        self._raw = bytearray()
        self._hash = hashlib.sha256()
        self._chunks = self._generate()
        self._cur = memoryview(b"")
        self._done = False

    def readable(self) -> bool:
        return True

    def _need(self, n: int) -> bytes | None:
        """The next n decompressed record bytes; None at a clean end."""
        while len(self._raw) < n:
            data = self._split.read(CHUNK)
            if not data:
                self._raw += self._z.flush()
                if not self._raw:
                    return None
                if len(self._raw) < n:
                    raise SystemError_(f"the tar-split record of layer {self._diff_id} is truncated")
                break
            self._raw += self._z.decompress(data)
        out = bytes(self._raw[:n])
        del self._raw[:n]
        return out

    def _generate(self):  # type: ignore[no-untyped-def]
        number = 0
        while (head := self._need(1)) is not None:
            if head == b"L":
                (n,) = struct.unpack("<I", self._need(4) or b"")
                while n:
                    part = self._need(min(n, CHUNK)) or b""
                    n -= len(part)
                    yield part
            elif head == b"F":
                size, n = struct.unpack("<QH", self._need(10) or b"")
                path = (self._need(n) or b"").decode("utf-8", "surrogateescape")
                yield from self._file(number, path, size)
                number += 1
            else:
                raise SystemError_(f"the tar-split record of layer {self._diff_id} is corrupt")

    def _file(self, number: int, path: str, size: int):  # type: ignore[no-untyped-def]
        full = os.path.join(self._diff, path)
        if self._stash is not None and os.path.exists(os.path.join(self._stash, str(number))):
            full = os.path.join(self._stash, str(number))
        try:
            fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as e:
            raise SystemError_(f"layer {self._diff_id}: cannot read {path!r} back: {e.strerror}") from None
        try:
            remaining = size
            while remaining:
                data = os.read(fd, min(CHUNK, remaining))
                if not data:
                    raise SystemError_(f"layer {self._diff_id}: {path!r} is shorter than when it was "
                                       "unpacked; the layer's files changed on disk")
                remaining -= len(data)
                yield data
        finally:
            os.close(fd)

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._cur:
            if self._done:
                return 0
            chunk = next(self._chunks, None)
            if chunk is None:
                self._done = True
                got = "sha256:" + self._hash.hexdigest()
                if got != self._diff_id:
                    raise SystemError_(f"layer {self._diff_id} rebuilt from its files hashes to {got}: "
                                       "the layer's files changed on disk")
                return 0
            self._hash.update(chunk)
            self._cur = memoryview(chunk)
        n = min(len(b), len(self._cur))
        b[:n] = self._cur[:n]
        self._cur = self._cur[n:]
        return n

    def read(self, n: int = -1) -> bytes:
        # a whole chunk at a time when it fits: no copy through a caller's buffer
        if n is not None and n >= 0 and not self._cur and not self._done:
            chunk = next(self._chunks, None)
            if chunk is None:
                return super().read(n) or b""
            self._hash.update(chunk)
            if len(chunk) <= n:
                return chunk
            self._cur = memoryview(chunk)
        return super().read(n) or b""

    def close(self) -> None:
        if not self.closed:
            self._split.close()
            self._chunks.close()
        super().close()


def open_split(split_dir: str, diff_dir: str, diff_id: str) -> BinaryIO:
    return SplitReader(split_dir, diff_dir, diff_id)  # type: ignore[return-value]


def has_split(split_dir: str) -> bool:
    return os.path.isfile(os.path.join(split_dir, SPLIT_FILE))
