"""The image-layer tar format as both directions see it: whiteout names and the overlay xattr
they stand for, the PAX records that carry xattrs, and sizes. Constants only."""

from __future__ import annotations

import os
from collections.abc import Callable

CHUNK = 1 << 20
# (uid, gid) -> (uid, gid): a user-namespace shift applied to every entry's owner (docker cp of a
# container under --userns-remap)
IdMapper = Callable[[int, int], tuple[int, int]]

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
OVERLAY_XATTR_PREFIX = "trusted.overlay."
PAX_XATTR_PREFIX = "SCHILY.xattr."

# a directory opened without following a symlink: the only way paths are walked here
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
