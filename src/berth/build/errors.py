"""Errors of the Dockerfile frontend, each naming where in the file the problem is."""

from berth.common.errors import InvalidParameter


class DockerfileError(InvalidParameter):
    """A malformed Dockerfile: `Dockerfile:3:5: unknown instruction: RUNN`.

    `line` and `column` are 1-based and point at the offending token when it is known, else at
    the start of the instruction; `end_line` is the last physical line of the instruction.
    """

    def __init__(self, reason: str, line: int = 0, column: int = 0, end_line: int = 0,
                 filename: str = "Dockerfile") -> None:
        self.reason = reason
        self.line = line
        self.column = column
        self.end_line = end_line or line
        self.filename = filename
        super().__init__(self._format())

    def _format(self) -> str:
        if self.line <= 0:
            return f"{self.filename}: {self.reason}"
        return f"{self.filename}:{self.line}:{max(self.column, 1)}: {self.reason}"

    def located(self, line: int, column: int, end_line: int = 0) -> "DockerfileError":
        """This error at a position, unless it already has one (the innermost position wins)."""
        if self.line > 0:
            return self
        return DockerfileError(self.reason, line, column, end_line, self.filename)

    @property
    def legacy_message(self) -> str:
        """The text dockerd's legacy builder answers with (`dockerfile parse error line 2: ...`)."""
        if self.line <= 0:
            return self.reason
        return f"dockerfile parse error line {self.line}: {self.reason}"


class ExpansionError(InvalidParameter):
    """A `${VAR...}` expansion failed (`${A:?msg}` unset, bad substitution, unterminated quote).

    Raised while a step is dispatched, as BuildKit does, not while the file is parsed.
    """

    def __init__(self, reason: str, word: str = "") -> None:
        self.reason = reason
        self.word = word
        super().__init__(f"failed to process {_go_quote_simple(word)}: {reason}" if word else reason)


def _go_quote_simple(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class StepFailed(InvalidParameter):
    """A RUN step that exited non-zero: its stream error carries the exit code, as dockerd's
    `errorDetail: {"code": N, "message": ...}` (docker-py checks it)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code
