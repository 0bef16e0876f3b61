import io
import os

import pytest

from berth.common.digest import sha256_bytes
from berth.content.store import ContentStore, DigestMismatch


def test_ingest_verifies_before_commit(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = ContentStore(str(tmp_path))
    data = b"hello" * 1000
    good = sha256_bytes(data)
    assert store.ingest(io.BytesIO(data), expected=good) == good
    assert store.read(good) == data
    with pytest.raises(DigestMismatch):
        store.put(b"other bytes", expected=sha256_bytes(b"not these"))
    assert not store.exists(sha256_bytes(b"other bytes"))
    assert os.listdir(tmp_path / "ingest") == []  # nothing half-written is left


def test_put_is_idempotent_and_delete(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = ContentStore(str(tmp_path))
    d1 = store.put(b"x")
    assert store.put(b"x") == d1 and store.size(d1) == 1
    store.delete(d1)
    assert not store.exists(d1)
