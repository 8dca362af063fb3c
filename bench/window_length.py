"""Window length: does the AG-SSM read long context when the data has it?

    python -m bench.window_length [--tracks 20] [--frames 600] [--windows 32 64 128 256 512]
                                  [--frames-per-step 256] [--epochs 10] [--out DIR]

A synthetic world with long-range AU processes (`auwild-manifest synth --long-range`: AU2, AU4
and AU10 follow slow episodes of 4-12 s that the face shows only in short bursts, at per-subject
rates), tiny random encoders and one store, as in the proving ground. The +AG-SSM row of the
ABAW10 ablation (its recipe dict from `train.recipes.ABLATIONS`, shrunk by the proving ground's
SYNTH_OVERRIDES) is trained at each training window with `optim.frames_per_step` fixed (batch =
frames_per_step // window, stride = window / 2, so every window length makes about the same
number of steps of the same cost; a window longer than frames_per_step trains one window a
step), selected on whole-track validation (`data.eval_window=0`),
and scored on validation twice: whole tracks in one pass, and the recipe's 64-frame evaluation
windows (stride 32). The frame-wise +HGA row (window 64) is the no-context reference.

Writes bench/results/window_length.{md,csv,png} after every row, so a cut run keeps the rows
it finished; finished rows are reused when the command runs again with the same --out.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.proving_ground import SYNTH_OVERRIDES
from bench.synthetic_world import extract, step

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
LONG_RANGE_AUS = ("AU2", "AU4", "AU10")  # LongRangeConfig().aus, the AUs context should help
EVAL_WINDOW, EVAL_STRIDE = 64, 32  # the abaw10 recipe's evaluation windows


def prepare_world(out: Path, tracks: int, frames: int, seed: int) -> tuple[Path, Path, Path]:
    """Long-range synthetic dataset, manifest, tiny models and store under `out` (each kept
    when already there) -> (data folder, manifest, store)."""
    data, models = out / "data", out / "models"
    manifest, store = out / "manifest.parquet", out / "features.zarr"
    if not (data / "synth_truth.json").exists():
        step("data_manifest", "synth", "--out", str(data), "--tracks", str(tracks),
             "--frames", str(frames), "--seed", str(seed), "--long-range", "--no-progress")  # fmt: skip
    if not manifest.exists():
        step("data_manifest", "affwild2", "--root", str(data), "--out", str(manifest))
    if not (models / "dinov2").exists():
        step("extract", "tiny-models", "--out", str(models), "--size", "demo")
    extract(manifest, store, f"dinov2={models / 'dinov2'}", f"wavlm={models / 'wavlm'}",
            "--no-progress")  # fmt: skip
    return data, manifest, store


def row_config(row: str, window: int, frames_per_step: int, overrides: list[str]):
    """The ABAW10 ablation row `row` at training window `window`, whole-track validation."""
    from train.ablate import row_overrides
    from train.recipes import ABLATIONS, resolve

    spec = dict(ABLATIONS["abaw10"])[row]
    sets = [
        *overrides,
        f"data.window={window}",
        f"data.stride={max(1, window // 2)}",
        "data.eval_window=0",
        f"optim.frames_per_step={frames_per_step}",
    ]
    config = resolve(None, row_overrides(spec, sets, row), recipe=spec)
    config.recipe = f"abaw10:{row}"
    return config


def val_scores(run: Path, eval_window: int, eval_stride: int, which: str = "best") -> dict:
    """Validation of `run` with evaluation windows `eval_window` (0: whole tracks), thresholds
    tuned on these predictions, as `fit` does each epoch -> mean F1 and per-AU F1."""
    from data_manifest.aus import AUS
    from data_manifest.manifest import usable_rows
    from train import tracks as T
    from train.inference import model_device, predict_probs, stack_labels
    from train.metrics import binarize, f1_per_au, mean_f1
    from train.run import load_model, model_dirs, read_run_info
    from train.thresholds import tune_thresholds

    info = read_run_info(run)
    model, meta, config = load_model(model_dirs(run)[0], which, "cpu")
    cfg = config.data
    cfg.eval_window, cfg.eval_stride = eval_window, eval_stride
    reader = T.open_store(info["store"])
    man = T.read_manifest(info["manifest"])
    rows = usable_rows(man[man["split"] == cfg.val_split], what=cfg.val_split)
    keys = list(meta["keys"])
    tracks = [T.load_track(reader, r, cfg.features, keys, cfg, False) for _, r in rows.iterrows()]
    probs = predict_probs(
        model, tracks, keys, cfg, config.optim.batch_size, model_device(model), None, reader,
        cfg.features,
    )  # fmt: skip
    p, y = stack_labels(tracks, probs)
    binary = binarize(p, tune_thresholds(p, y))
    per_au = f1_per_au(binary, y)
    return {
        "mean_f1": mean_f1(binary, y),
        "long_range_f1": float(np.mean([per_au[AUS.index(a)] for a in LONG_RANGE_AUS])),
        "other_f1": float(
            np.mean([per_au[j] for j, a in enumerate(AUS) if a not in LONG_RANGE_AUS])
        ),
        "per_au": {a: float(v) for a, v in zip(AUS, per_au)},
        "epoch": int(meta.get("epoch", 0)),
    }


def run_row(
    store: Path, manifest: Path, out: Path, row: str, window: int, frames_per_step: int,
    overrides: list[str],
) -> dict:  # fmt: skip
    """Fit one (row, window) and score it; the result is kept in RUN/window_length.json."""
    from train.loop import fit

    run = out / f"{row.strip('+').replace('-', '').lower()}_w{window}"
    done = run / "window_length.json"
    if done.exists():
        return json.loads(done.read_text())
    config = row_config(row, window, frames_per_step, overrides)
    print(f"\n== {row}, window {window}, batch {config.batch_size()} -> {run}", flush=True)
    t0 = time.perf_counter()
    fit(config, str(store), str(manifest), run, progress=False)
    seconds = time.perf_counter() - t0
    whole = val_scores(run, 0, EVAL_STRIDE)
    short = val_scores(run, EVAL_WINDOW, EVAL_STRIDE)
    whole_last = val_scores(run, 0, EVAL_STRIDE, "last")
    short_last = val_scores(run, EVAL_WINDOW, EVAL_STRIDE, "last")
    result = {
        "row": row,
        "window": window,
        "frames_per_step": frames_per_step,
        "batch": config.batch_size(),
        "epochs": config.optim.epochs,
        "best_epoch": whole["epoch"],
        "f1_whole": whole["mean_f1"],
        "f1_eval64": short["mean_f1"],
        "long_range_f1_whole": whole["long_range_f1"],
        "long_range_f1_eval64": short["long_range_f1"],
        "other_f1_whole": whole["other_f1"],
        "other_f1_eval64": short["other_f1"],
        "last_f1_whole": whole_last["mean_f1"],
        "last_f1_eval64": short_last["mean_f1"],
        "per_au_whole": whole["per_au"],
        "per_au_eval64": short["per_au"],
        "train_s": seconds,
    }
    done.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if not k.startswith("per_au")}), flush=True)
    return result


def plot(
    table: pd.DataFrame,
    path: Path,
    trivial: dict | None = None,
    ceiling: pd.DataFrame | None = None,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ssm = table[table["row"] == "+AG-SSM"].sort_values("window")
    ref = table[table["row"] == "+HGA"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    panels = (
        ("", "all 12 AUs"),
        ("long_range_", "long-range AUs (" + ", ".join(LONG_RANGE_AUS) + ")"),
    )
    for ax, (prefix, title) in zip(axes, panels):
        for col, label, style in (
            ("f1_whole", "whole-track eval", "o-"),
            ("f1_eval64", f"{EVAL_WINDOW}-frame eval", "s--"),
        ):
            ax.plot(ssm["window"], ssm[prefix + col], style, label=f"+AG-SSM, {label}")
        if len(ref):
            ax.axhline(float(ref[prefix + "f1_whole"].iloc[0]), color="grey", ls=":",
                       label="+HGA (frame-wise)")  # fmt: skip
        if prefix and ceiling is not None and len(ceiling):
            c = ceiling[ceiling["window"].isin(list(ssm["window"]))]
            ax.plot(c["window"], c["f1"], "^-.", color="tab:green",
                    label="data: burst density over the window, no learning")  # fmt: skip
            ax.legend(fontsize=8)
        if trivial:
            key = prefix + "f1" if prefix else "mean_f1"
            ax.axhline(trivial[key], color="tab:red", ls=":", lw=1, label="all-positive")
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(ssm["window"]), [str(w) for w in ssm["window"]])
        ax.set_xlabel("training window (frames)")
        ax.set_ylabel("val mean F1")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Training window length, constant frames per step (long-range synthetic world)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def context_ceiling(data: Path, windows: list[int], split: str = "val") -> pd.DataFrame:
    """What the data allows, without learning: F1 of each long-range AU on `split` when frames
    are scored by the share of frames of a centred window (1: the frame alone; 0: the whole
    track) whose cue the generator put on screen (synth_truth `visible` >= 0.4), one threshold
    tuned per AU. A perfect burst detector with that much context reaches this F1."""
    from data_manifest.aus import AU_INDEX
    from train.thresholds import best_threshold

    truth = json.loads((data / "synth_truth.json").read_text())
    tids = [t for t, info in truth["tracks"].items() if info["split"] == split]
    shown: dict[str, list] = {a: [] for a in LONG_RANGE_AUS}
    labels: dict[str, list] = {a: [] for a in LONG_RANGE_AUS}
    for tid in tids:
        with np.load(data / "synth_truth" / f"{tid}.npz") as z:
            for a in LONG_RANGE_AUS:
                shown[a].append((z["visible"][:, AU_INDEX[a]] >= 0.4).astype(np.float64))
                labels[a].append(z["labels"][:, AU_INDEX[a]] == 1)
    rows = []
    for w in [1, *windows, 0]:
        per_au = {}
        for a in LONG_RANGE_AUS:
            scores = np.concatenate([density(x, w) for x in shown[a]])  # (N,)
            target = np.concatenate(labels[a])
            if target.any():
                per_au[a] = best_threshold(scores, target)[1]
        rows.append({"window": w, "f1": float(np.mean(list(per_au.values()))), **per_au})
    return pd.DataFrame(rows)


def density(x: np.ndarray, window: int) -> np.ndarray:
    """Mean of x (T,) over a centred window of `window` frames (cut at the ends; 0: the whole
    track, 1: x itself)."""
    if window == 0:
        return np.full(len(x), x.mean())
    csum = np.r_[0.0, np.cumsum(x)]
    t = np.arange(len(x))
    lo = np.clip(t - window // 2, 0, len(x))
    hi = np.clip(t - window // 2 + window, 0, len(x))
    return (csum[hi] - csum[lo]) / np.maximum(hi - lo, 1)


def all_positive(manifest: Path) -> dict[str, float]:
    """Val F1 of marking every frame positive: all AUs, long-range AUs, the others."""
    from bench.proving_ground import all_positive_f1
    from data_manifest.aus import AUS

    f1 = all_positive_f1(pd.read_parquet(manifest))
    others = [a for a in AUS if a not in LONG_RANGE_AUS]
    return {
        "mean_f1": f1["mean_f1"],
        "long_range_f1": float(np.mean([f1[a] for a in LONG_RANGE_AUS])),
        "other_f1": float(np.mean([f1[a] for a in others])),
    }


def to_markdown(
    table: pd.DataFrame,
    command: str,
    world: str,
    overrides: list[str],
    trivial: dict | None,
    ceiling: pd.DataFrame | None = None,
) -> str:
    lines = [
        "## Window length: the AG-SSM on a synthetic world with long-range AU processes",
        "",
        f"Command: `{command}`",
        "",
        f"Setup: {os.cpu_count()} CPU cores, `nice -n 5`, a shared machine (times move with "
        f"the load). {world} Frames/step is batch x window (`optim.frames_per_step`, except "
        "where one window is longer). Every row is the abaw10 ablation row's recipe with "
        f"`--set {' '.join(overrides)}`, `data.stride` = window / 2, `data.eval_window=0` (the "
        "checkpoint is chosen on whole-track validation). Validation mean F1 at thresholds "
        "tuned on validation (as `fit` reports it), of the best checkpoint, predicted on whole "
        f"tracks in one pass and in {EVAL_WINDOW}-frame windows every {EVAL_STRIDE} frames "
        f"(the recipe's evaluation). Long-range AUs: {', '.join(LONG_RANGE_AUS)}. Train time: "
        "the whole `fit`, whole-track validation after every epoch included. One seed.",
        "",
        "| row | window | frames/step | batch | val mean F1 (whole-track eval) | val mean F1 "
        f"({EVAL_WINDOW}-frame eval) | long-range AUs F1 (whole / {EVAL_WINDOW}) | other AUs F1 "
        f"(whole / {EVAL_WINDOW}) | best epoch | train time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        lines.append(
            f"| {r['row']} | {r['window']} | {r['batch'] * r['window']} | {r['batch']} | "
            f"{r['f1_whole']:.3f} | {r['f1_eval64']:.3f} | {r['long_range_f1_whole']:.3f} / "
            f"{r['long_range_f1_eval64']:.3f} | {r['other_f1_whole']:.3f} / "
            f"{r['other_f1_eval64']:.3f} | {r['best_epoch']}/{r['epochs']} | "
            f"{r['train_s']:.0f} s |"
        )
    if trivial:
        lines.append(
            f"| all-positive | | | | {trivial['mean_f1']:.3f} | {trivial['mean_f1']:.3f} | "
            f"{trivial['long_range_f1']:.3f} | {trivial['other_f1']:.3f} | | |"
        )
    lines += [
        "",
        "Last epoch instead of the best one (val mean F1, whole-track / "
        f"{EVAL_WINDOW}-frame eval): "
        + "; ".join(
            f"{r['row']} w{r['window']} {r['last_f1_whole']:.3f} / {r['last_f1_eval64']:.3f}"
            for _, r in table.iterrows()
        )
        + ".",
        "",
        "![val mean F1 against training window](window_length.png)",
    ]
    if ceiling is not None and len(ceiling):
        aus = [a for a in LONG_RANGE_AUS if a in ceiling.columns]
        lines += [
            "",
            "What the data allows, without learning (`context_ceiling`): F1 on validation of the "
            "long-range AUs with positives there, each frame scored by the share of frames of a "
            "centred window whose cue is on screen (synth_truth `visible` >= 0.4: a perfect "
            "burst detector), one threshold tuned per AU. Window 1 is the frame alone, "
            "'track' the whole track (the subject's level alone).",
            "",
            "| context (frames) | long-range AUs F1 | " + " | ".join(aus) + " |",
            "|---|---|" + "---|" * len(aus),
        ]
        for _, r in ceiling.iterrows():
            w = "track" if r["window"] == 0 else str(int(r["window"]))
            cells = " | ".join(f"{r[a]:.3f}" for a in aus)
            lines.append(f"| {w} | {r['f1']:.3f} | {cells} |")
    return "\n".join(lines) + "\n"


def table_of(results: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(
        [{k: v for k, v in r.items() if not k.startswith("per_au")} for r in results]
    )
    order = table["row"].map({"+HGA": 1}).fillna(0)
    return table.assign(_o=order).sort_values(["_o", "window"]).drop(columns="_o")


def write_results(
    results: list[dict],
    command: str,
    world: str,
    overrides: list[str],
    dest: Path,
    trivial: dict | None = None,
    ceiling: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """window_length.{md,csv,png} in `dest` from the rows done so far."""
    dest.mkdir(parents=True, exist_ok=True)
    table = table_of(results)
    table.to_csv(dest / "window_length.csv", index=False, float_format="%.4f")
    if (table["row"] == "+AG-SSM").any():
        plot(table, dest / "window_length.png", trivial, ceiling)
    text = to_markdown(table, command, world, overrides, trivial, ceiling)
    (dest / "window_length.md").write_text(text)
    return table


def run(
    store: Path, manifest: Path, out: Path, windows: list[int], frames_per_step: int,
    overrides: list[str], command: str, world: str, dest: Path = RESULTS,
    ceiling: pd.DataFrame | None = None,
) -> pd.DataFrame:  # fmt: skip
    """Every window of the +AG-SSM row, then the +HGA reference; results written after each."""
    plan = [("+AG-SSM", w) for w in windows]
    plan.insert(min(len(plan), 2), ("+HGA", EVAL_WINDOW))  # the reference early, in case of a cut
    trivial = all_positive(manifest)
    results = []
    table = pd.DataFrame()
    for row, window in plan:
        results.append(run_row(store, manifest, out, row, window, frames_per_step, overrides))
        table = write_results(results, command, world, overrides, dest, trivial, ceiling)
    return table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", default="bench_out/window_length")
    ap.add_argument("--tracks", type=int, default=20)
    ap.add_argument("--frames", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--windows", type=int, nargs="+", default=[32, 64, 128, 256, 512])
    ap.add_argument("--frames-per-step", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args(argv)
    command = (
        f"nice -n 5 python -m bench.window_length --tracks {args.tracks} --frames {args.frames} "
        f"--seed {args.seed} --windows {' '.join(map(str, args.windows))} "
        f"--frames-per-step {args.frames_per_step} --epochs {args.epochs}"
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    built = out / "world_build.json"  # how long the world took, kept for later invocations
    fresh = not built.exists() and not (out / "data" / "synth_truth.json").exists()
    data, manifest, store = prepare_world(out, args.tracks, args.frames, args.seed)
    if fresh:
        built.write_text(json.dumps({"seconds": time.perf_counter() - t0}))
    truth = json.loads((data / "synth_truth.json").read_text())
    s = truth["splits"]
    took = json.loads(built.read_text())["seconds"] / 60 if built.exists() else None
    world = (
        f"World: `auwild-manifest synth --long-range`, {args.tracks} tracks x {args.frames} "
        f"frames, seed {args.seed} ({s['train']['tracks']} train, {s['val']['tracks']} val "
        f"tracks); tiny random DINOv2 + WavLM (`--size demo`)"
        + (f"; built in {took:.1f} min." if took is not None else ".")
    )
    overrides = [o for o in SYNTH_OVERRIDES if not o.startswith("optim.epochs")]
    overrides.append(f"optim.epochs={args.epochs}")
    ceiling = context_ceiling(data, args.windows)
    table = run(
        store, manifest, out, args.windows, args.frames_per_step, overrides, command, world,
        ceiling=ceiling,
    )  # fmt: skip
    print(table.to_string(index=False))
    print(f"total {(time.perf_counter() - t0) / 60:.1f} min; wrote {RESULTS / 'window_length.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
