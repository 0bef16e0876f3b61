import pytest

from berth.common import reference
from berth.common.digest import chain_ids, sha256_bytes


@pytest.mark.parametrize("given,canonical,familiar", [
    ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("index.docker.io/foo", "docker.io/library/foo:latest", "foo:latest"),
    ("foo/bar", "docker.io/foo/bar:latest", "foo/bar:latest"),
    ("localhost:5000/a/b:t", "localhost:5000/a/b:t", "localhost:5000/a/b:t"),
    ("localhost/a", "localhost/a:latest", "localhost/a:latest"),
    ("quay.io/x/y", "quay.io/x/y:latest", "quay.io/x/y:latest"),
])
def test_normalize_and_familiar(given: str, canonical: str, familiar: str) -> None:
    assert reference.normalize(given) == canonical
    assert reference.familiar(canonical) == familiar


@pytest.mark.parametrize("bad", ["", "Busybox", "a b", "busybox:", "busybox:bad/tag", ":tag", "a" * 64,
                                 "b@sha256:short"])
def test_invalid(bad: str) -> None:
    with pytest.raises(reference.InvalidReference):
        reference.parse(bad)


def test_chain_ids() -> None:
    a, b = sha256_bytes(b"a"), sha256_bytes(b"b")
    assert chain_ids([]) == []
    assert chain_ids([a]) == [a]
    assert chain_ids([a, b]) == [a, sha256_bytes(f"{a} {b}".encode())]
