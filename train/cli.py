"""`auwild-train`: fit, eval, predict, report, ablate and recipes; each a thin wrapper.

    auwild-train fit --store S --manifest M --recipe NAME --out RUN [--set key=value ...] [--folds K]
    auwild-train eval RUN [--split val]
    auwild-train predict RUN --split test --out DIR [--store S --manifest M] [--example FILE]
    auwild-train predict-video --video FILE|FOLDER --run RUN --out DIR [--keep-store PATH]
    auwild-train report RUN [--split val] [--track ID ...]
    auwild-train ablate --recipe abaw10 --store S --manifest M --out DIR [--seeds N]
    auwild-train recipes [NAME]

Several GPUs: `torchrun --nproc-per-node N -m train fit ...`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from data_manifest.cli_options import (
    add_command,
    add_device,
    add_manifest,
    add_out,
    add_progress,
    add_store,
    add_tracks,
    new_parser,
    run_cli,
)
from data_manifest.user_error import UserError, unknown_name

log = logging.getLogger(__name__)


def _overrides(args: argparse.Namespace) -> list[str]:
    return [item for group in (args.set or []) for item in group]


def _config(args: argparse.Namespace):
    from train.config import ConfigError
    from train.recipes import resolve

    extra = []
    if getattr(args, "folds", None) is not None:
        extra.append(f"folds.k={args.folds}")
    try:
        return resolve(args.recipe, _overrides(args) + extra)
    except (ConfigError, KeyError) as exc:
        raise UserError(str(exc.args[0]) if exc.args else str(exc)) from exc


def cmd_fit(args: argparse.Namespace) -> int:
    from train.loop import fit_run

    config = _config(args)
    if args.device != "auto":  # else the recipe's or --set optim.device
        config.optim.device = args.device
    _exists(args.manifest, "manifest")
    result = fit_run(
        config,
        args.store,
        args.manifest,
        args.out,
        stop_after_epochs=args.stop_after_epochs,
        progress=not args.no_progress,
    )
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports
        print(json.dumps(_short(result), indent=2))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from train.predict import describe_f1, evaluate_run

    m = evaluate_run(args.run, args.split, args.store, args.manifest, args.which, args.device)
    print(f"{args.split}: {describe_f1(m)}")
    print("  ".join(f"{a} {v:.3f}" for a, v in m["per_au_f1"].items()))
    print(f"wrote {Path(args.run) / 'metrics.json'}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from train.predict import predict_split
    from train.submission import predictions_frame, read_example, write_parquet, write_submission

    track_list = args.tracks
    example = None
    if args.example:
        _exists(args.example, "example file")
        example = read_example(args.example)
        if track_list is None:
            track_list = list(dict.fromkeys(t for t, _ in example))
    preds = predict_split(
        args.run, args.split, args.store, args.manifest, args.which, args.device, track_list
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_parquet(
        out / "predictions.parquet", predictions_frame(preds.order, preds.probs, preds.binary)
    )
    n = write_submission(out / "predictions.txt", preds.binary, preds.order, example)
    print(f"wrote {out / 'predictions.parquet'} and {out / 'predictions.txt'} ({n} frames)")
    return 0


def cmd_predict_video(args: argparse.Namespace) -> int:
    from extract.job.config import parse_encoder_list
    from train.predict_video import predict_videos

    run = args.run or args.run_positional
    if not run or (args.run and args.run_positional and args.run != args.run_positional):
        raise UserError("give the run once: --run RUN")
    summary = predict_videos(
        args.video,
        run,
        args.out,
        which=args.which,
        device=args.device,
        keep_store=args.keep_store,
        models_dir=args.models_dir,
        visual=parse_encoder_list(",".join(args.visual or []), needs_source=set()),
        audio=parse_encoder_list(",".join(args.audio or []), needs_source=set()),
        store=args.store,
        progress=not args.no_progress,
    )
    print("\n".join(summary.lines()))
    return 0 if summary.ok else 1


def cmd_report(args: argparse.Namespace) -> int:
    from train.report import build_report

    path = build_report(args.run, args.track, args.split, args.device)
    print(f"wrote {path}")
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from train.ablate import ablate, format_table
    from train.config import ConfigError

    _exists(args.manifest, "manifest")
    try:
        df = ablate(
            args.recipe,
            args.store,
            args.manifest,
            args.out,
            seeds=args.seeds,
            overrides=_overrides(args),
            progress=not args.no_progress,
            rows=args.rows,
        )
    except ConfigError as exc:  # a row's --set that does not fit its config
        raise UserError(str(exc)) from exc
    print(format_table(df))
    print(f"wrote {Path(args.out) / 'ablation.csv'}")
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    from train.recipes import ABLATIONS, RECIPES, describe, describe_fields

    if args.fields:
        try:
            print(describe_fields(args.fields))
        except KeyError as exc:
            raise UserError(str(exc.args[0])) from exc
        return 0
    if not args.name:
        for name in RECIPES:
            rows = ", ".join(r for r, _ in ABLATIONS.get(name, []))
            print(name + (f"  (ablation rows: {rows})" if rows else ""))
        return 0
    if args.name not in RECIPES:
        raise unknown_name("recipe", args.name, RECIPES)
    print(describe(args.name))
    return 0


def _exists(path: str | None, what: str) -> None:
    if path and "://" not in path and not Path(path).exists():
        raise UserError(f"{what} not found: {path}")


def _short(result: dict) -> dict:
    if "folds" in result:
        return {"out": result["out"], "folds": [_short(r) for r in result["folds"]]}
    return {k: result[k] for k in ("out", "epochs_done", "step", "best") if k in result}


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        action="append",
        nargs="+",
        metavar="KEY=VALUE",
        help="override a config key, dotted (optim.lr=3e-4, model.hidden=128, "
        "data.features.audio=audio/wavlm); values parsed as JSON when they are",
    )


def _add_run_source(p: argparse.ArgumentParser) -> None:
    """The store and manifest of a run: the ones it was fitted on unless given."""
    add_store(p, required=False, help="feature store (default: the store RUN was fitted on)")
    add_manifest(p, required=False, help="manifest.parquet (default: the one RUN was fitted on)")


def _add_which(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--which", default="best", choices=["best", "last"], help="checkpoint of RUN to use"
    )


def build_parser() -> argparse.ArgumentParser:
    from train.recipes import ABLATIONS, RECIPES

    parser = new_parser(
        "auwild-train", "Train, evaluate and apply AU detectors on a feature store."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = add_command(sub, "fit", "train a recipe on a store (resumes an existing RUN)")
    add_store(p)
    add_manifest(p)
    p.add_argument(
        "--recipe", default="baseline", choices=list(RECIPES), help="recipe (see `recipes`)"
    )
    add_out(p, "run directory")
    p.add_argument(
        "--folds",
        type=int,
        default=None,
        help="K video-grouped folds over train+val (default: the manifest's train/val split)",
    )
    p.add_argument(
        "--stop-after-epochs",
        type=int,
        default=None,
        help="stop after N epochs, to resume later (default: train all epochs)",
    )
    add_progress(p)
    add_device(p, "torch device (auto leaves the recipe's optim.device)")
    _add_set(p)
    p.set_defaults(func=cmd_fit)

    p = add_command(sub, "eval", "score RUN on a labelled split -> RUN/metrics.json")
    p.add_argument("run", help="run directory written by fit")
    p.add_argument("--split", default="val", help="manifest split to score")
    _add_which(p)
    _add_run_source(p)
    add_device(p)
    p.set_defaults(func=cmd_eval)

    p = add_command(sub, "predict", "predictions.parquet and ABAW predictions.txt for a split")
    p.add_argument("run", help="run directory written by fit")
    p.add_argument("--split", default="test", help="manifest split to predict")
    add_out(p, "output folder")
    _add_run_source(p)
    p.add_argument(
        "--example",
        default=None,
        help="official example file: its rows, its order (default: all frames of each track)",
    )
    add_tracks(p, "the test list, in order (default: the split's tracks)")
    _add_which(p)
    add_device(p)
    p.set_defaults(func=cmd_predict)

    p = add_command(
        sub,
        "predict-video",
        "per-frame AUs of video files, OpenFace-style: DIR/<video>.csv and a timeline .png",
    )
    p.add_argument("run_positional", nargs="?", metavar="RUN", help="run directory (or --run)")
    p.add_argument("--run", default=None, help="run directory written by fit")
    p.add_argument("--video", required=True, help="a video file, or a folder: its videos, sorted")
    add_out(p, "output folder")
    p.add_argument(
        "--keep-store",
        default=None,
        metavar="PATH",
        help="extract into this store and keep it, with PATH's manifest beside it "
        "(default: a temporary store, removed)",
    )
    p.add_argument(
        "--models-dir",
        default=None,
        help="folder holding the encoder model folders the run's store names, if they moved",
    )
    for kind in ("visual", "audio"):
        p.add_argument(
            f"--{kind}",
            action="append",
            default=None,
            metavar="NAME=PATH",
            help=f"{kind} encoder model to use instead of the one the store names (repeatable)",
        )
    add_store(
        p, required=False, help="RUN's store, for its extraction settings (default: RUN's own)"
    )
    _add_which(p)
    add_progress(p)
    add_device(p, "torch device for the encoders and the model (auto prefers the store's kind)")
    p.set_defaults(func=cmd_predict_video)

    p = add_command(sub, "report", "one self-contained HTML page: RUN/report.html (val)")
    p.add_argument("run", help="run directory written by fit")
    p.add_argument(
        "--track",
        action="append",
        default=None,
        help="track for an AU timeline, repeatable (default: best, median and worst per-track F1)",
    )
    p.add_argument(
        "--split", default="val", help="split to report (report_<split>.html if not val)"
    )
    add_device(p)
    p.set_defaults(func=cmd_report)

    p = add_command(sub, "ablate", "train the ablation rows of a recipe -> DIR/ablation.csv")
    p.add_argument(
        "--recipe",
        required=True,
        choices=list(ABLATIONS),
        help="recipe whose ablation rows to train",
    )
    add_store(p)
    add_manifest(p)
    add_out(p, "output folder (one run per row and seed, ablation.csv)")
    p.add_argument("--seeds", type=int, default=1, help="seeds per row (mean and std over them)")
    p.add_argument(
        "--rows", nargs="+", default=None, help="only these rows, e.g. baseline +FM (default: all)"
    )
    add_progress(p)
    _add_set(p)
    p.set_defaults(func=cmd_ablate)

    p = add_command(sub, "recipes", "list recipes, or print one fully resolved")
    p.add_argument("name", nargs="?", help="recipe to print (default: list them all)")
    p.add_argument(
        "--fields",
        metavar="NAME",
        help="list the settings (model.* or loss.*) of a registered model or loss, with defaults",
    )
    p.set_defaults(func=cmd_recipes)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
