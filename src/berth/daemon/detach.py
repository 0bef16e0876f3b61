"""Detach keys: the byte sequence on an attached stdin that ends the attachment, not the process.

Docker's format is a comma-separated list of `ctrl-<key>` or single characters; the default is
ctrl-p,ctrl-q. The bytes of a sequence being typed are held back and passed on only if the
sequence breaks off, as dockerd's escape proxy does.
"""

from __future__ import annotations

from berth.common.errors import InvalidParameter

DEFAULT_KEYS = b"\x10\x11"  # ctrl-p, ctrl-q


def parse_keys(spec: str | None) -> bytes:
    if not spec:
        return DEFAULT_KEYS
    out = bytearray()
    for key in spec.split(","):
        low = key.lower()
        if len(key) == 1:
            out.append(ord(key))
        elif low.startswith("ctrl-") and len(low) == 6 and ("a" <= low[5] <= "z" or low[5] in "@[\\]^_"):
            out.append(ord(low[5].upper()) & 0x1F)  # ctrl-a = 1 ... ctrl-@ = 0, ctrl-_ = 31
        else:
            raise InvalidParameter(f"Invalid detach keys ({spec}) provided")
    return bytes(out)


class EscapeProxy:
    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self._held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """The bytes to pass on, and whether the whole detach sequence has now been typed."""
        out = bytearray()
        for i in range(len(data)):
            self._held += data[i:i + 1]
            if self.keys.startswith(self._held):
                if self._held == self.keys:
                    return bytes(out), True
                continue
            out += self._held
            self._held = b""
        return bytes(out), False
