"""The `berth` console script. `--version` is answered before click is even imported."""

from __future__ import annotations

import sys

from berth import __version__


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args in (["--version"], ["-v"]):
        sys.stdout.write(f"berth version {__version__}\n")
        return 0
    from berth.cli.app import cli
    from berth.cli.errors import run_cli

    return run_cli(cli, args)


if __name__ == "__main__":
    sys.exit(main())
