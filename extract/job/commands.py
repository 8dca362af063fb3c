"""`auwild-extract run` and `auwild-extract bench`: thin wrappers over the job library."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data_manifest.cli_options import (
    add_command,
    add_json,
    add_manifest,
    add_progress,
    add_store,
    add_tracks,
)
from data_manifest.user_error import UserError
from extract.job.config import add_config_options, config_from_args
from extract.job.shard import parse_shard

EXAMPLE = """example:
  auwild-extract run --manifest manifest.parquet --store features.zarr \\
      --visual dinov2=facebook/dinov2-base --audio wavlm=microsoft/wavlm-base-plus,logmel \\
      --landmarks fan --batch-size 64
  # SLURM array, one GPU per task, then once: auwild-extract consolidate features.zarr
  auwild-extract run ... --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT
"""


def _add_job_options(p: argparse.ArgumentParser) -> None:
    add_manifest(p)
    add_config_options(p)


def _read_manifest(path: str):
    from data_manifest.manifest import read_manifest

    if not Path(path).exists():
        raise UserError(f"manifest not found: {path}")
    return read_manifest(path)


def cmd_run(args: argparse.Namespace) -> int:
    from extract.job.failures import failures_path
    from extract.job.runner import run_extraction

    cfg = config_from_args(args)
    manifest = _read_manifest(args.manifest)
    shard = parse_shard(args.shard)
    tracks = set(args.tracks) if args.tracks is not None else None
    summary = run_extraction(
        manifest,
        args.store,
        cfg,
        shard=shard,
        tracks=tracks,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    if shard.count == 1 and not args.no_consolidate:
        from extract.store.consolidate import consolidate_store

        consolidate_store(args.store)
    print(f"\nstore: {args.store}  (shard {shard})")
    print(summary.table())
    if summary.failed:
        print(f"failures recorded in {failures_path(args.store)}", file=sys.stderr)
    if summary.unknown:
        print(
            f"--tracks names id(s) not in the manifest: {', '.join(summary.unknown)}",
            file=sys.stderr,
        )
    return 0 if summary.ok else 1


def cmd_bench(args: argparse.Namespace) -> int:
    from extract.job.bench import report, run_bench

    cfg = config_from_args(args)
    manifest = _read_manifest(args.manifest)
    report(run_bench(manifest, cfg, track=args.track, repeats=args.repeat), args.json)
    return 0


def register(sub) -> None:
    p = add_command(
        sub,
        "run",
        "extract features for a manifest into a store",
        epilog=EXAMPLE,
    )
    _add_job_options(p)
    add_store(p)
    p.add_argument("--shard", default=None, help="i/N: this process's share of the manifest")
    add_tracks(p, "only these tracks")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="recompute the groups named here (--visual, --audio) in complete tracks too; other "
        "groups are kept, except in tracks whose sources changed, which are rewritten whole",
    )
    add_progress(p)
    p.add_argument(
        "--no-consolidate",
        action="store_true",
        help="skip consolidating store metadata at the end (sharded runs skip it anyway)",
    )
    p.set_defaults(func=cmd_run)

    b = add_command(sub, "bench", "end-to-end frames/s against encoder-only frames/s (the ceiling)")
    _add_job_options(b)
    b.add_argument("--track", default=None, help="track to time (default: the first with a video)")
    b.add_argument(
        "--repeat", type=int, default=1, help="time each rate this many times, keep the best"
    )
    add_json(b, "the timings")
    b.set_defaults(func=cmd_bench)
