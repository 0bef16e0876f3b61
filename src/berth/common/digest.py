"""sha256 digests, content IDs and layer chain IDs."""

import hashlib
import re

_DIGEST_RE = re.compile(r"^(sha256):([a-f0-9]{64})$|^(sha512):([a-f0-9]{128})$")


def sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def is_digest(value: str) -> bool:
    return bool(_DIGEST_RE.match(value))


def split(digest: str) -> tuple[str, str]:
    """('sha256', hex) of a digest string; ValueError if it is not one."""
    m = _DIGEST_RE.match(digest)
    if not m:
        raise ValueError(f"invalid digest: {digest!r}")
    algo, hexpart = digest.split(":", 1)
    return algo, hexpart


def chain_ids(diff_ids: list[str]) -> list[str]:
    """ChainID(n) = sha256(ChainID(n-1) + " " + DiffID(n)); ChainID(0) = DiffID(0)."""
    out: list[str] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            out.append(sha256_bytes(f"{out[-1]} {diff_id}".encode()))
    return out
