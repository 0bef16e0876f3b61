"""Errors the Engine API client raises.

Kept free of imports so the CLI can catch them without loading the HTTP machinery.
"""


class ClientError(Exception):
    """The daemon answered with a non-2xx status; `message` is its `{"message": ...}` text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def __repr__(self) -> str:
        return f"ClientError({self.status}, {self.message!r})"


class DaemonUnreachable(Exception):
    """The socket or TCP endpoint could not be reached at all."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"Cannot connect to the berth daemon at {host}. Is the berth daemon running?")
        self.host = host
        self.reason = reason
