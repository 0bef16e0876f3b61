"""Registry error responses turned into berth's typed errors, worded as dockerd words them."""

from __future__ import annotations

import json

from berth.common.errors import BerthError, Forbidden, InvalidParameter, NotFound, SystemError_, Unauthorized


class RegistryError(BerthError):
    """An error answer of a registry: `code` is the spec's (MANIFEST_UNKNOWN, ...) or empty."""

    def __init__(self, message: str, http_status: int, code: str = "") -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code
        self.status = _API_STATUS.get(http_status, 500)


_API_STATUS = {400: 400, 401: 401, 403: 403, 404: 404, 405: 400, 416: 400}


def describe(http_status: int, body: bytes) -> tuple[str, str]:
    """(code, 'code: message') from a spec error body, as distribution's client formats it."""
    try:
        errors = json.loads(body).get("errors") or []
    except (ValueError, AttributeError):
        errors = []
    if errors and isinstance(errors[0], dict):
        code = str(errors[0].get("code", ""))
        message = str(errors[0].get("message", "")) or code.lower()
        return code, f"{code.lower().replace('_', ' ')}: {message}"
    if http_status == 401:
        return "UNAUTHORIZED", "unauthorized: authentication required"
    if http_status == 403:
        return "DENIED", "denied: requested access to the resource is denied"
    if http_status == 404:
        return "NOT_FOUND", "not found"
    return "", f"unexpected status {http_status}"


def from_response(http_status: int, body: bytes, context: str = "") -> RegistryError:
    code, text = describe(http_status, body)
    return RegistryError(f"{context}: {text}" if context else text, http_status, code)


__all__ = ["Forbidden", "InvalidParameter", "NotFound", "RegistryError", "SystemError_", "Unauthorized",
           "describe", "from_response"]
