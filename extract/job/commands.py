"""`auwild-extract run` and `auwild-extract bench`: thin wrappers over the job library."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from data_manifest.cli_support import UserError
from extract.device import DEVICE_HELP
from extract.job.config import ExtractConfig, parse_encoder_list
from extract.job.shard import parse_shard

EXAMPLE = """example:
  auwild-extract run --manifest manifest.parquet --store features.zarr \\
      --visual dinov2=facebook/dinov2-base --audio wavlm=microsoft/wavlm-base-plus,logmel \\
      --landmarks fan --batch-size 64
  # SLURM array, one GPU per task, then once: auwild-extract consolidate features.zarr
  auwild-extract run ... --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT
"""


def _add_job_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifest", required=True, help="manifest.parquet from auwild-manifest")
    p.add_argument(
        "--visual",
        default="",
        help="visual encoders, name=HUB_ID_OR_FOLDER[,...]: dinov2, convnext",
    )
    p.add_argument(
        "--audio",
        default="",
        help="audio encoders, name=HUB_ID_OR_FOLDER[,...]: wavlm, whisper; logmel takes none",
    )
    p.add_argument(
        "--landmarks",
        default="template",
        choices=["fan", "mediapipe", "template"],
        help="face and landmark backend (template: aligned crops; fan: GPU detector + FAN)",
    )
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--batch-size", type=int, default=32, help="frames per encoder batch")
    p.add_argument("--crop-size", type=int, default=224, help="aligned face crop side in pixels")
    p.add_argument(
        "--visual-input",
        default="auto",
        choices=["auto", "frames", "video"],
        help="auto: the frames folder when the manifest has one, else the video",
    )
    p.add_argument(
        "--detect-every", type=int, default=1, help="detect faces every k frames, track between"
    )
    p.add_argument(
        "--visual-layer", type=int, default=None, help="hidden layer of the visual tokens"
    )
    p.add_argument("--audio-layers", default=None, help="audio layers to average, e.g. 6,9,12")
    p.add_argument(
        "--token-dtype",
        default=ExtractConfig.token_dtype,
        choices=["fp16", "int8"],
        help=f"patch token storage (default {ExtractConfig.token_dtype}; bench/results/storage.md)",
    )
    p.add_argument(
        "--patch-pool",
        type=int,
        default=ExtractConfig.patch_pool,
        help=f"average-pool the patch grid to this side (default {ExtractConfig.patch_pool}; "
        "a grid no larger is kept); 0 keeps the full grid",
    )


def _config(args: argparse.Namespace) -> ExtractConfig:
    visual = parse_encoder_list(args.visual, needs_source={"dinov2", "convnext"})
    audio = parse_encoder_list(args.audio, needs_source={"wavlm", "whisper"})
    if not visual and not audio:
        raise UserError("nothing to extract: give --visual and/or --audio")
    layers = tuple(int(x) for x in args.audio_layers.split(",")) if args.audio_layers else None
    return ExtractConfig(
        visual={k: str(v) for k, v in visual.items()},
        audio=audio,
        landmarks=args.landmarks,
        device=args.device,
        batch_size=args.batch_size,
        crop_size=args.crop_size,
        visual_input=args.visual_input,
        detect_every=args.detect_every,
        visual_layer=args.visual_layer,
        audio_layers=layers,
        token_dtype=args.token_dtype,
        patch_pool=args.patch_pool or None,
    )


def _read_manifest(path: str):
    from data_manifest.manifest import read_manifest

    if not Path(path).exists():
        raise UserError(f"manifest not found: {path}")
    return read_manifest(path)


def cmd_run(args: argparse.Namespace) -> int:
    from extract.job.failures import failures_path
    from extract.job.runner import run_extraction

    cfg = _config(args)
    manifest = _read_manifest(args.manifest)
    shard = parse_shard(args.shard)
    tracks = {t.strip() for t in args.tracks.split(",") if t.strip()} if args.tracks else None
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
        return 1
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from extract.job.bench import run_bench

    cfg = _config(args)
    manifest = _read_manifest(args.manifest)
    result = run_bench(manifest, cfg, track=args.track)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:>20}: {value}")
    return 0


def register(sub, add_common_options) -> None:
    p = sub.add_parser(
        "run",
        help="extract features for a manifest into a store",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_job_options(p)
    p.add_argument("--store", required=True, help="store path or URL (features.zarr, s3://...)")
    p.add_argument("--shard", default=None, help="i/N: this process's share of the manifest")
    p.add_argument("--tracks", default=None, help="only these track ids, comma-separated")
    p.add_argument("--overwrite", action="store_true", help="recompute complete tracks too")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--no-consolidate",
        action="store_true",
        help="skip consolidating store metadata at the end (sharded runs skip it anyway)",
    )
    add_common_options(p)
    p.set_defaults(func=cmd_run)

    b = sub.add_parser(
        "bench", help="end-to-end frames/s against encoder-only frames/s (the ceiling)"
    )
    _add_job_options(b)
    b.add_argument("--track", default=None, help="track to time (default: the first with a video)")
    b.add_argument("--json", action="store_true", help="print JSON")
    add_common_options(b)
    b.set_defaults(func=cmd_bench)
