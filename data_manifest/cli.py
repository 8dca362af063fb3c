"""`auwild-manifest`: build, check and synthesise dataset manifests."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from data_manifest.cli_options import (
    add_command,
    add_json,
    add_out,
    add_progress,
    new_parser,
    run_cli,
    write_json,
)
from data_manifest.user_error import UserError

log = logging.getLogger("auwild-manifest")


def _report_rows(df) -> int:
    """Print non-ok rows and a status count; returns the number of non-ok rows."""
    from data_manifest.manifest import usable_rows

    bad = df.drop(usable_rows(df).index)
    for _, row in bad.iterrows():
        print(f"{row['track_id']}: {row['status']}: {row['error']}", file=sys.stderr)
    counts = ", ".join(f"{k}={v}" for k, v in df["status"].value_counts().sort_index().items())
    splits = ", ".join(f"{k}={v}" for k, v in df["split"].value_counts().sort_index().items())
    print(f"{len(df)} tracks ({splits}); status: {counts}")
    return len(bad)


def _cmd_affwild2(args: argparse.Namespace) -> int:
    from data_manifest.affwild2 import build_affwild2_manifest
    from data_manifest.manifest import write_manifest

    df = build_affwild2_manifest(args.root, test_list=args.test_list, probe=not args.no_probe)
    write_manifest(df, args.out)
    n_bad = _report_rows(df)
    print(f"wrote {args.out}")
    return 1 if (n_bad and args.strict) else 0


def _cmd_csv(args: argparse.Namespace) -> int:
    from data_manifest.csv_import import build_csv_manifest
    from data_manifest.manifest import write_manifest

    df = build_csv_manifest(args.table, probe=not args.no_probe)
    write_manifest(df, args.out)
    n_bad = _report_rows(df)
    print(f"wrote {args.out}")
    return 1 if (n_bad and args.strict) else 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from data_manifest.manifest import read_manifest
    from data_manifest.validate import validate_manifest

    df = read_manifest(args.manifest)
    report = validate_manifest(
        df, args.manifest, tolerate_length=args.tolerate_length, exact=not args.header_counts
    )
    payload = {
        "manifest": str(args.manifest),
        "ok": report.ok,
        "splits": report.summary(),
        "problems": [str(p) for p in report.problems],
        "warnings": [str(w) for w in report.warnings],
    }
    if not write_json(args.json, json.dumps(payload, indent=1)):
        print(report.format_summary())
    for w in report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    for p in report.problems:
        print(f"error: {p}", file=sys.stderr)
    return 0 if report.ok else 1


def _cmd_synth(args: argparse.Namespace) -> int:
    from data_manifest.synth import LongRangeConfig, SynthConfig, generate_synthetic

    if args.n_tracks < 1 or args.frames < 2:
        raise UserError(
            f"--n-tracks must be >= 1 and --frames >= 2 (got {args.n_tracks}, {args.frames})"
        )
    cfg = SynthConfig(
        tracks=args.n_tracks,
        frames=args.frames,
        seed=args.seed,
        crop_size=args.crop_size,
        codec=args.codec,
        effect_scale=args.effect_scale,
        long_range=LongRangeConfig() if args.long_range else None,
    )
    try:
        truth = generate_synthetic(
            args.out, cfg, overwrite=args.overwrite, progress=not args.no_progress
        )
    except FileExistsError as exc:
        raise UserError(str(exc)) from exc
    for split, s in truth["splits"].items():
        print(f"{split}: {s['tracks']} tracks, {s['frames']} frames")
    print(f"wrote {Path(args.out).resolve()} (truth in synth_truth.json)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "auwild-manifest",
        "Dataset manifests for AU detection: Aff-Wild2 layout, CSV import, validation, "
        "synthetic data.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = add_command(sub, "affwild2", "manifest from an Aff-Wild2 / ABAW folder")
    p.add_argument("--root", required=True, help="dataset root (searched by structure)")
    add_out(p, "manifest parquet to write")
    p.add_argument(
        "--test-list",
        default=None,
        help="test-set track list (default: a *test*.txt found under the root)",
    )
    _add_build_options(p)
    p.set_defaults(func=_cmd_affwild2)

    p = add_command(
        sub, "csv", "manifest from a table track_id,video,split[,labels,frames_dir,side]"
    )
    p.add_argument("--table", required=True, help="CSV table")
    add_out(p, "manifest parquet to write")
    _add_build_options(p)
    p.set_defaults(func=_cmd_csv)

    p = add_command(sub, "validate", "check paths, labels and lengths; print a summary")
    p.add_argument("manifest", help="manifest parquet")
    p.add_argument(
        "--tolerate-length",
        type=int,
        default=0,
        help="annotation/video length differences up to this many lines are warnings",
    )
    p.add_argument(
        "--header-counts",
        action="store_true",
        help="trust container frame counts instead of counting packets",
    )
    add_json(p, "the report")
    p.set_defaults(func=_cmd_validate)

    p = add_command(sub, "synth", "write a synthetic dataset in the Aff-Wild2 layout")
    add_out(p, "output folder")
    p.add_argument(
        "--n-tracks",
        "--tracks",
        dest="n_tracks",
        type=int,
        default=8,
        metavar="N",
        help="number of tracks (one _left/_right pair counts two)",
    )
    p.add_argument("--frames", type=int, default=300, help="frames per video (25 fps)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same dataset")
    p.add_argument("--crop-size", type=int, default=112, help="side of the cropped_aligned images")
    p.add_argument(
        "--codec", default="libx264", choices=["libx264", "h264", "mpeg4"], help="video codec"
    )
    p.add_argument(
        "--effect-scale", type=float, default=1.0, help="multiplies the visible AU effects"
    )
    p.add_argument(
        "--long-range",
        action="store_true",
        help="some AUs follow slow episodes seen only in bursts, at per-subject rates "
        "(context over seconds matters; default off)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace an earlier synthetic dataset in --out"
    )
    add_progress(p)
    p.set_defaults(func=_cmd_synth)
    return parser


def _add_build_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-probe", action="store_true", help="do not open videos for fps and frame counts"
    )
    p.add_argument("--strict", action="store_true", help="exit 1 when any track is not ok")


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
