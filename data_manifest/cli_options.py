"""One grammar for the three command lines: the options they share, help with defaults, one-line errors.

Every sub-command of `auwild-manifest`, `auwild-extract` and `auwild-train` is made with
`add_command`, which gives it `--verbose` and `--traceback`; options that mean the same thing
in several commands (the device, the store, the output, a track list, JSON output, progress
bars) are added here and nowhere else, so their spelling, default and type cannot drift.
`run_cli` dispatches and turns a `UserError` (or a usage mistake) into one line on stderr and
exit status 2; `--traceback` shows the rest.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from data_manifest.user_error import UserError, did_you_mean

DEVICE_HELP = "auto (the GPU when there is one, else the CPU), cpu, cuda or cuda:N"
EXIT_USER_ERROR = 2
EXIT_BROKEN_PIPE = 141  # what a shell reports for a writer stopped by SIGPIPE (128 + 13)


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("auwild")
    except PackageNotFoundError:
        return "unknown"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Help that shows each option's default (not for flags or options whose help says it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, "", argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose mistakes are one line and whose misspelled choices get a hint."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def _check_value(self, action: argparse.Action, value) -> None:
        if action.choices is not None and value not in action.choices:
            known = [str(c) for c in action.choices]
            raise argparse.ArgumentError(
                action,
                f"invalid choice {value!r}{did_you_mean(value, known) or ';'} "
                f"choose from {', '.join(known)}",
            )

    def error(self, message: str):
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def new_parser(prog: str, description: str) -> Parser:
    """The top-level parser of one CLI, with `--version`."""
    parser = Parser(prog=prog, description=description)
    parser.add_argument(
        "--version",
        action="version",
        version=f"{prog} {package_version()}",
        help="print the auwild version and exit",
    )
    return parser


def add_command(subparsers, name: str, help: str, **kwargs) -> Parser:
    """A sub-command with the shared `--verbose` and `--traceback`; `kwargs` go to add_parser."""
    kwargs.setdefault("description", help[:1].upper() + help[1:] + ".")
    kwargs.setdefault("formatter_class", HelpFormatter)
    p = subparsers.add_parser(name, help=help, **kwargs)
    add_common_options(p)
    return p


# -- the shared options -------------------------------------------------------------------------
# Each adder is the only place its option is spelled; help may say what it means in the command.


def add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--traceback", action="store_true", help="show the full traceback on errors"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def add_device(parser: argparse.ArgumentParser, help: str = "torch device") -> None:
    parser.add_argument("--device", default="auto", help=f"{help}: {DEVICE_HELP}")


def add_store(
    parser: argparse.ArgumentParser,
    *,
    required: bool = True,
    positional: bool = False,
    help: str = "feature store: a path or fsspec URL (features.zarr, s3://bucket/features.zarr)",
) -> None:
    """`--store S`; with `positional`, `STORE` alone is accepted too (the older spelling)."""
    if required:
        help += " (required)"
    parser.add_argument("--store", default=None, metavar="STORE", help=help)
    if positional:
        parser.add_argument("store_positional", nargs="?", metavar="STORE", help=help)
    parser.set_defaults(_store_required=required, _command_parser=parser)


def add_manifest(
    parser: argparse.ArgumentParser,
    *,
    required: bool = True,
    help: str = "manifest.parquet from auwild-manifest",
) -> None:
    parser.add_argument("--manifest", required=required, default=None, help=help)


def add_out(parser: argparse.ArgumentParser, help: str, *, required: bool = True) -> None:
    parser.add_argument("--out", required=required, default=None, help=help)


def add_tracks(parser: argparse.ArgumentParser, help: str = "only these tracks") -> None:
    parser.add_argument(
        "--tracks",
        default=None,
        type=track_list,
        metavar="IDS|FILE",
        help=f"{help}: comma-separated track ids, or a file with one id per line (in order)",
    )


def add_json(parser: argparse.ArgumentParser, help: str = "the result") -> None:
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        default=None,
        metavar="FILE",
        help=f"{help} as JSON: on stdout instead of text, or with FILE written there as well",
    )


def add_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-progress", "--quiet", dest="no_progress", action="store_true", help="no progress bars"
    )


def track_list(text: str) -> list[str]:
    """`a,b,c` -> ids; an existing file (or `@FILE`) -> its non-empty lines, in order."""
    path = text[1:] if text.startswith("@") else text
    looks_like_file = "/" in text or text.endswith((".txt", ".csv", ".lst"))
    if "," not in text and looks_like_file and not Path(path).is_file():
        raise argparse.ArgumentTypeError(f"track list file not found: {path}")
    if text.startswith("@") or ("," not in text and Path(path).is_file()):
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise argparse.ArgumentTypeError(f"cannot read track list {path}: {exc}") from None
        return [t.strip() for t in lines if t.strip()]
    return [t.strip() for t in text.split(",") if t.strip()]


def write_json(target: str | None, text: str) -> bool:
    """Put JSON where `--json` says: stdout for `-` (True: the text output is replaced)."""
    if target in (None, ""):
        return False
    if target == "-":
        print(text)
        return True
    from data_manifest.shared_files import write_text_atomic

    write_text_atomic(target, text + "\n")
    return False


# -- running ------------------------------------------------------------------------------------


def _settle_store(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    parser = getattr(args, "_command_parser", parser)  # errors name the sub-command
    positional = getattr(args, "store_positional", None)
    if positional is not None:
        if args.store not in (None, positional):
            parser.error(f"two stores given: {positional} and --store {args.store}")
        args.store = positional
    if getattr(args, "_store_required", False) and not getattr(args, "store", None):
        parser.error("give the store: --store STORE")


def run_cli(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse, dispatch to the sub-command's `func(args) -> int | None`, and turn UserError into exit 2."""
    try:
        args = parser.parse_args(argv)
        _settle_store(parser, args)
    except SystemExit as exc:  # --help, --version, or a usage mistake already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USER_ERROR
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    func: Callable[[argparse.Namespace], int | None] = args.func
    try:
        code = func(args)
        sys.stdout.flush()
    except UserError as exc:
        if getattr(args, "traceback", False):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:
        # the reader went away (`inspect | head`): stop quietly, and keep Python from
        # complaining when it flushes stdout at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    return int(code or 0)
