"""How failures reach the user: docker's messages on stderr and docker's exit statuses.

Commands raise (ClientError from the client, `Failure` for their own errors); this module alone
turns exceptions into output and an exit status.
"""

from __future__ import annotations

import sys

import click

from berth.client.errors import ClientError, DaemonUnreachable


class Failure(Exception):
    """A command's own error: `message` (if any) goes to stderr, `code` becomes the exit status."""

    def __init__(self, message: str | None = None, code: int = 1) -> None:
        super().__init__(message or "")
        self.message = message
        self.code = code


def daemon_error(exc: ClientError) -> str:
    return f"Error response from daemon: {exc.message}"


def describe(exc: BaseException) -> str:
    """The line docker would print for an error raised by the client or a template."""
    from berth.cli.format.errors import TemplateError

    if isinstance(exc, ClientError):
        return daemon_error(exc)
    if isinstance(exc, DaemonUnreachable):
        return str(exc)
    if isinstance(exc, TemplateError):
        return f"template: {exc}" if not str(exc).startswith("template") else str(exc)
    return str(exc)


def run_cli(cli: click.Group, args: list[str]) -> int:
    from berth.cli.format.errors import TemplateError, TemplateSyntaxError

    try:
        # without standalone mode click returns (not raises) the code of a `click.exceptions.Exit`
        code = cli.main(args=args, prog_name="berth", standalone_mode=False)
    except click.exceptions.MissingParameter as exc:
        exc.show()
        return 1
    except click.exceptions.UsageError as exc:
        # docker exits 125 when it cannot even parse the command line.
        exc.show()
        return 125
    except click.exceptions.Abort:
        return 130
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except Failure as exc:
        if exc.message:
            print(exc.message, file=sys.stderr)
        return exc.code
    except (ClientError, DaemonUnreachable) as exc:
        print(describe(exc), file=sys.stderr)
        return 1
    except TemplateError as exc:
        phase = "parse" if isinstance(exc, TemplateSyntaxError) else "execute"
        print(f"failed to {phase} template: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `berth ps | head`: the reader went away; nothing useful to report.
        sys.stderr.close()
        return 0
    return code if isinstance(code, int) and not isinstance(code, bool) else 0
