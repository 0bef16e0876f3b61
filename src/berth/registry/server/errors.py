"""The distribution spec's error codes, each with the HTTP status a client expects for it.

Handlers and the service raise `RegistryError`; only the router turns it into the spec's JSON
body `{"errors": [{"code", "message", "detail"}]}`.
"""

from __future__ import annotations

import json
from typing import Any


class RegistryError(Exception):
    def __init__(self, status: int, code: str, message: str, detail: Any = None,
                 headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail
        self.headers = headers or []

    def body(self) -> bytes:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            err["detail"] = self.detail
        return json.dumps({"errors": [err]}).encode() + b"\n"


def blob_unknown(digest: str) -> RegistryError:
    return RegistryError(404, "BLOB_UNKNOWN", "blob unknown to registry", {"digest": digest})


def blob_upload_unknown(uuid: str) -> RegistryError:
    return RegistryError(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", {"uuid": uuid})


def blob_upload_invalid(message: str) -> RegistryError:
    return RegistryError(400, "BLOB_UPLOAD_INVALID", message)


def digest_invalid(message: str, digest: str | None = None) -> RegistryError:
    return RegistryError(400, "DIGEST_INVALID", message, {"digest": digest} if digest else None)


def manifest_unknown(reference: str) -> RegistryError:
    return RegistryError(404, "MANIFEST_UNKNOWN", "manifest unknown", {"reference": reference})


def manifest_invalid(message: str, status: int = 400) -> RegistryError:
    return RegistryError(status, "MANIFEST_INVALID", message)


def manifest_blob_unknown(digest: str) -> RegistryError:
    return RegistryError(400, "MANIFEST_BLOB_UNKNOWN", "manifest references an unknown blob or manifest",
                         {"digest": digest})


def name_invalid(name: str) -> RegistryError:
    return RegistryError(400, "NAME_INVALID", "invalid repository name", {"name": name})


def name_unknown(name: str) -> RegistryError:
    return RegistryError(404, "NAME_UNKNOWN", "repository name not known to registry", {"name": name})


def tag_invalid(tag: str) -> RegistryError:
    return RegistryError(400, "TAG_INVALID", "invalid tag", {"tag": tag})


def unsupported(message: str, status: int = 405) -> RegistryError:
    return RegistryError(status, "UNSUPPORTED", message)


def range_invalid(message: str, headers: list[tuple[str, str]]) -> RegistryError:
    return RegistryError(416, "BLOB_UPLOAD_INVALID", message, headers=headers)


def unauthorized(realm: str = "", challenge: str = "", message: str = "authentication required",
                 detail: Any = None) -> RegistryError:
    """401 with a challenge: `Basic realm=...` by default, or the given `Bearer ...` one."""
    return RegistryError(401, "UNAUTHORIZED", message, detail,
                         [("WWW-Authenticate", challenge or f'Basic realm="{realm}"')])


def denied() -> RegistryError:
    """Logged in, but the policy does not allow this: docker shows `denied: requested access ...`."""
    return RegistryError(403, "DENIED", "requested access to the resource is denied")
