"""What every auwild command shares: one error type for user mistakes, printed as one line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence


class UserError(Exception):
    """A mistake the user can fix (a missing file, a bad option); printed without a traceback."""


def add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--traceback", action="store_true", help="show the full traceback on errors"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def run_cli(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse, dispatch to the sub-command's `func(args) -> int | None`, and turn UserError into exit 2."""
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    func: Callable[[argparse.Namespace], int | None] = args.func
    try:
        code = func(args)
    except UserError as exc:
        if getattr(args, "traceback", False):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return int(code or 0)
