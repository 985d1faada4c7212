"""Command-line interface of fames (argparse lives here only)."""

from fames.cli.main import main

__all__ = ["main"]
