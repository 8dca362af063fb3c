"""`auwild-extract`: the feature side. Each sub-command lives beside the code it drives."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from data_manifest.cli_options import new_parser, run_cli

# Modules that each define `register(subparsers)`; imported lazily-light (no torch at import).
COMMAND_MODULES = (
    "extract.job.commands",  # run, bench
    "extract.store.commands",  # inspect, verify, merge, consolidate
    "extract.visual_commands",  # tiny-models, draw-regions
)


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "auwild-extract",
        "Extract face, visual and audio features into a shareable Zarr feature store.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
