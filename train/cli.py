"""`auwild-train`: fit, eval, predict, report, ablate and recipes; each a thin wrapper.

    auwild-train fit --store S --manifest M --recipe NAME --out RUN [--set key=value ...] [--folds K]
    auwild-train eval RUN [--split val]
    auwild-train predict RUN --split test --out DIR [--store S --manifest M] [--example FILE]
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

from data_manifest.cli_support import UserError, add_common_options, run_cli

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
        raise UserError(str(exc).strip("'\"")) from exc


def cmd_fit(args: argparse.Namespace) -> int:
    from train.loop import fit_run

    config = _config(args)
    if args.device:
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
    from train.predict import evaluate_run

    m = evaluate_run(args.run, args.split, args.store, args.manifest, args.which, args.device)
    print(f"{args.split}: mean F1 {m['mean_f1']:.4f}")
    print("  ".join(f"{a} {v:.3f}" for a, v in m["per_au_f1"].items()))
    print(f"wrote {Path(args.run) / 'metrics.json'}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from train.predict import predict_split
    from train.submission import predictions_frame, read_example, write_parquet, write_submission

    track_list = None
    if args.tracks:
        _exists(args.tracks, "track list")
        track_list = [t.strip() for t in Path(args.tracks).read_text().splitlines() if t.strip()]
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


def cmd_report(args: argparse.Namespace) -> int:
    from train.report import build_report

    path = build_report(args.run, args.track, args.split, args.device)
    print(f"wrote {path}")
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from train.ablate import ablate, format_table

    _exists(args.manifest, "manifest")
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
    print(format_table(df))
    print(f"wrote {Path(args.out) / 'ablation.csv'}")
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    from train.recipes import ABLATIONS, RECIPES, describe

    if not args.name:
        for name in RECIPES:
            rows = ", ".join(r for r, _ in ABLATIONS.get(name, []))
            print(name + (f"  (ablation rows: {rows})" if rows else ""))
        return 0
    if args.name not in RECIPES:
        raise UserError(f"unknown recipe {args.name!r}; known: {sorted(RECIPES)}")
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


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (GPU if present), cpu or cuda")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="auwild-train",
        description="Train, evaluate and apply AU detectors on a feature store.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("fit", help="train a recipe on a store (resumes an existing RUN)")
    p.add_argument("--store", required=True, help="feature store (path or fsspec URL)")
    p.add_argument("--manifest", required=True, help="manifest.parquet")
    p.add_argument("--recipe", default="baseline", help="recipe name (see `recipes`)")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--folds", type=int, default=None, help="K video-grouped folds over train+val")
    p.add_argument(
        "--stop-after-epochs", type=int, default=None, help="stop after N epochs (resume later)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--device", default=None, help="auto, cpu or cuda (default: optim.device)")
    _add_set(p)
    add_common_options(p)
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("eval", help="score RUN on a labelled split -> RUN/metrics.json")
    p.add_argument("run")
    p.add_argument("--split", default="val")
    p.add_argument("--which", default="best", choices=["best", "last"])
    p.add_argument("--store", default=None, help="default: the store RUN was fitted on")
    p.add_argument("--manifest", default=None, help="default: the manifest RUN was fitted on")
    _add_device(p)
    add_common_options(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="predictions.parquet and ABAW predictions.txt for a split")
    p.add_argument("run")
    p.add_argument("--split", default="test")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--store", default=None)
    p.add_argument("--manifest", default=None)
    p.add_argument("--example", default=None, help="official example file: its rows, its order")
    p.add_argument("--tracks", default=None, help="test list: one track id per line, in order")
    p.add_argument("--which", default="best", choices=["best", "last"])
    _add_device(p)
    add_common_options(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("report", help="one self-contained HTML page: RUN/report.html (val)")
    p.add_argument("run")
    p.add_argument(
        "--track",
        action="append",
        default=None,
        help="track for an AU timeline, repeatable (default: best, median and worst per-track F1)",
    )
    p.add_argument(
        "--split", default="val", help="split to report (report_<split>.html if not val)"
    )
    _add_device(p)
    add_common_options(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("ablate", help="train the ablation rows of a recipe -> DIR/ablation.csv")
    p.add_argument("--recipe", default="abaw10")
    p.add_argument("--store", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--rows", nargs="+", default=None, help="only these rows (e.g. baseline +FM)")
    p.add_argument("--no-progress", action="store_true")
    _add_set(p)
    add_common_options(p)
    p.set_defaults(func=cmd_ablate)

    p = sub.add_parser("recipes", help="list recipes, or print one fully resolved")
    p.add_argument("name", nargs="?")
    add_common_options(p)
    p.set_defaults(func=cmd_recipes)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
