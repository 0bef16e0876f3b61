"""Typed errors that carry the HTTP status the Engine API answers with.

Every layer raises these; only the API layer turns them into `{"message": ...}` responses.
"""


class BerthError(Exception):
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidParameter(BerthError):
    status = 400


class Unauthorized(BerthError):
    status = 401


class Forbidden(BerthError):
    status = 403


class NotFound(BerthError):
    status = 404


class Conflict(BerthError):
    status = 409


class NotModified(BerthError):
    status = 304


class SystemError_(BerthError):
    """A real fault inside berth or the host (500)."""

    status = 500


class NotImplementedYet(BerthError):
    status = 501
