"""The `fames` command: parses arguments, calls the library, prints; errors become one-line messages.

Exit codes: 0 success, 1 failure, 2 bad usage (bad arguments, unreadable or invalid input files).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from fames import __version__
from fames.errors import FamesError, UsageError

SUBCOMMANDS = ["train", "eval", "bits", "lib", "select", "run", "demo"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fames", description=__doc__.splitlines()[0],
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"fames {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in SUBCOMMANDS:
        module = _load(name)
        if module is not None:
            module.register(sub)
    for subparser in sub.choices.values():
        _add_verbosity(subparser)
    return parser


def _add_verbosity(parser: argparse.ArgumentParser) -> None:
    """-v/-q accepted after the subcommand too (and on nested subcommands)."""
    if "-q" not in parser._option_string_actions:
        parser.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more log output")
        parser.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="only errors")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _add_verbosity(child)


def _load(name: str):
    try:
        return importlib.import_module(f"fames.cli.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"fames.cli.{name}":
            return None
        raise


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.ERROR if args.quiet else (logging.DEBUG if args.verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    from fames.allocator import keep_large_blocks_in_heap

    keep_large_blocks_in_heap()
    try:
        if getattr(args, "device", None) is not None:  # before any loading, quantization or training
            from fames.device import resolve_device

            resolve_device(args.device)
        return int(args.handler(args) or 0)
    except UsageError as exc:
        if getattr(args, "verbose", 0) > 1:  # -vv: the full traceback, for bug reports
            raise
        print(f"fames: error: {exc}", file=sys.stderr)
        return 2
    except (FamesError, ValueError, FileNotFoundError, PermissionError) as exc:
        if getattr(args, "verbose", 0) > 1:
            raise
        code = 2 if isinstance(exc, (ValueError, FileNotFoundError, PermissionError)) else 1
        print(f"fames: error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print("fames: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
