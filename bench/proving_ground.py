"""The proving ground: does the ABAW10 system learn on the synthetic AU world, and does each
component help where the data says it should?

    python -m bench.proving_ground [--tracks 24] [--frames 300] [--seeds 2] [--out DIR]

Steps: a synthetic dataset with a fixed seed, tiny random encoders, one store (DINOv2 and the
classical FHOG + geometry features, WavLM and log-mel audio), the ABAW10 ablation rows
(`auwild-train ablate`: baseline, +FM, +HGA, +AG-SSM, +ASL, weighted BCE), and the trivial
predictor that marks every frame positive. Checks (all on the validation split):

- the full system (+ASL) beats the all-positive predictor by at least 0.25 mean F1;
- the FM step as it stands here: the classical baseline (FHOG of the crop, landmark geometry,
  log-mel) over the same frame-wise MLP on the tiny random DINOv2 CLS and WavLM (+FM). The
  synthetic AUs are drawn geometric changes of a face, which FHOG reads almost exactly, while a
  tiny random "foundation" model is an untrained patch encoder: the step the paper measures
  (+15.9 points from foundation models) cannot show on this world, and the check says which
  way it goes here rather than claiming the paper's direction;
- HGA beats pooled features (+FM) on the region-local AUs;
- the audio-guided temporal model (+AG-SSM) over frame-wise +HGA on AU25/AU26 on the frames
  whose mouth is hidden (where the lips cannot be seen, the voice and the neighbouring frames
  must tell);
- temporal modelling (+AG-SSM) helps under frame noise: mean F1 over +HGA, overall and on the
  frames the generator spoiled (corrupted, occluded, mouth hidden).
Every row before +ASL trains with plain BCE (no positive weights). The asymmetric loss (+ASL
against +AG-SSM) and BCE with automatic positive weights (the "weighted BCE" row, +AG-SSM's
model) are reported, not checked: one seed does not tell them apart
(bench/results/proving_ground_diagnosis.md). With the classical baseline reading log-mel audio,
no row lacks audio, so audio alone is not checked apart from the hidden-mouth claim.

Every F1 is given twice: at thresholds tuned on the validation split (optimistic, as the
paper's tables) and at thresholds from the other half of the validation tracks (honest); the
checks use the optimistic figure, as the table's rows do.

Writes bench/results/proving_ground.md (the table and the margins) and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from bench.synthetic_world import ablate, extract, prepare

HONEST = "honest_mean_f1"  # ablation.csv column (train.predict.HONEST_KEY)

HERE = Path(__file__).resolve().parent
# Sizes for the synthetic world (a few thousand training frames of tiny random features): the
# recipes' defaults are sized for Aff-Wild2. The heads shrink and are regularised, and batches
# hold 4 windows instead of 16, for 45 epochs: 15 tracks of 300 frames make only ~140 windows,
# so at 16 per step 30 epochs are ~270 optimizer steps and every row stops short of what it can
# learn. The ASL row focuses less on negatives (gamma_neg 2, not 4): here the positives are not
# rare enough for the stronger focusing. bench/RESULTS.md has the measurements behind each.
SYNTH_OVERRIDES = (
    "model.d_model=64",
    "model.dropout=0.5",
    "model.n_layers=1",
    "model.expand=1",
    "model.d_state=8",
    "optim.batch_size=4",
    "optim.epochs=45",
    "loss.gamma_neg=2",
)
ROWS = ("baseline", "+FM", "+HGA", "+AG-SSM", "+ASL", "weighted BCE")
# Rows the checks read; the slow test trains only these (the last row is reported only).
CHECKED_ROWS = ROWS[:-1]
REGION_LOCAL_AUS = ("AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24")
AUDIO_AUS = ("AU25", "AU26")


def all_positive_f1(manifest: pd.DataFrame, split: str = "val") -> dict[str, float]:
    """F1 of predicting every annotated frame positive: 2p / (1 + p) per AU."""
    from data_manifest.aus import AUS
    from data_manifest.labels import load_labels

    rows = manifest[(manifest["split"] == split) & (manifest["labels"].astype(str) != "")]
    labels = np.concatenate(
        [
            load_labels(r.labels, int(r.n_frames) if r.n_frames and r.n_frames > 0 else None).labels
            for r in rows.itertuples()
        ]
    )
    out = {}
    for j, au in enumerate(AUS):
        known = labels[:, j] >= 0
        p = float((labels[known, j] == 1).mean()) if known.any() else 0.0
        out[au] = 2 * p / (1 + p) if p > 0 else 0.0
    out["mean_f1"] = float(np.mean([out[a] for a in AUS]))
    return out


# Frame subsets from synth_truth/<track>.npz where a component should matter most.
SPOILED = ("corrupted", "occluded", "mouth_hidden")  # one frame alone says little
MOUTH_HIDDEN = ("mouth_hidden",)  # the lips cannot be seen; the voice still can be heard


def subset_f1(preds, truth: dict[str, dict], flags: tuple[str, ...]) -> np.ndarray:
    """Per-AU F1 (A,) of `preds` (train.predict.Predictions) on the frames where any of the
    generator's `flags` is set; truth maps track id -> its synth_truth arrays."""
    from train.metrics import f1_per_au

    binary, labels = [], []
    for tid in preds.order:
        chosen = np.any([truth[tid][f] for f in flags], axis=0)  # (T,)
        y = preds.tracks[tid].labels  # (T, A), -1 unknown
        n = min(len(chosen), len(y))
        binary.append(preds.binary[tid][:n][chosen[:n]])
        labels.append(y[:n][chosen[:n]])
    return f1_per_au(np.concatenate(binary), np.concatenate(labels))


def subset_scores(ablation: Path, data: Path, rows: list[str], seeds: int) -> pd.DataFrame:
    """Per row (averaged over seeds): mean F1 on the spoiled frames, and AU25/AU26 F1 on the
    frames whose mouth is hidden. Each run predicts the validation split once."""
    from data_manifest.aus import AU_INDEX
    from train.ablate import row_dir
    from train.predict import predict_split
    from train.recipes import ABLATIONS

    index = {name: i for i, (name, _) in enumerate(ABLATIONS["abaw10"])}
    audio = [AU_INDEX[a] for a in AUDIO_AUS]
    truth: dict[str, dict] = {}
    out = []
    for row in rows:
        spoiled, hidden = [], []
        for k in range(seeds):
            preds = predict_split(
                row_dir(ablation, index[row], row) / f"seed{k}", "val", device="cpu"
            )
            for tid in preds.order:
                if tid not in truth:
                    truth[tid] = dict(np.load(data / "synth_truth" / f"{tid}.npz"))
            spoiled.append(subset_f1(preds, truth, SPOILED).mean())
            hidden.append(subset_f1(preds, truth, MOUTH_HIDDEN)[audio].mean())
        out.append(
            {
                "row": row,
                "spoiled_mean_f1": np.mean(spoiled),
                "mouth_hidden_au25_26": np.mean(hidden),
            }
        )
    return pd.DataFrame(out).set_index("row")


FM_CLAIM = "the FM step on this world: classical baseline over +FM, mean F1"


def checks(
    table: pd.DataFrame, trivial: dict[str, float], subsets: pd.DataFrame
) -> list[tuple[str, float, float, bool]]:
    """(claim, ours, reference, passed) for each claim of the module docstring."""
    rows = table.set_index("row")

    def mean(row: str, aus) -> float:
        return float(rows.loc[row, list(aus)].mean())

    def over(claim: str, ours: float, reference: float) -> tuple[str, float, float, bool]:
        return claim, float(ours), float(reference), bool(ours > reference)

    full = float(rows.loc["+ASL", "mean_f1"])
    target = trivial["mean_f1"] + 0.25
    hidden, spoiled = subsets["mouth_hidden_au25_26"], subsets["spoiled_mean_f1"]
    return [
        ("+ASL mean F1 >= all-positive + 0.25", full, target, full >= target),
        over(FM_CLAIM, rows.loc["baseline", "mean_f1"], rows.loc["+FM", "mean_f1"]),
        over(
            "+HGA over +FM on region-local AUs",
            mean("+HGA", REGION_LOCAL_AUS),
            mean("+FM", REGION_LOCAL_AUS),
        ),
        over(
            "+AG-SSM over +HGA on AU25/AU26 where the mouth is hidden",
            hidden["+AG-SSM"],
            hidden["+HGA"],
        ),
        over(
            "+AG-SSM (temporal) over +HGA, mean F1",
            rows.loc["+AG-SSM", "mean_f1"],
            rows.loc["+HGA", "mean_f1"],
        ),
        over(
            "+AG-SSM over +HGA on spoiled frames (corrupted, occluded, mouth hidden)",
            spoiled["+AG-SSM"],
            spoiled["+HGA"],
        ),
    ]


def reported(table: pd.DataFrame) -> list[tuple[str, float, float]]:
    """(comparison, row, reference) of the imbalance remedies, reported and not checked: mean
    F1, optimistic and honest, for the rows the table has."""
    rows = table.set_index("row")
    pairs = [("+ASL", "+AG-SSM"), ("weighted BCE", "+AG-SSM"), ("+ASL", "weighted BCE")]
    out = []
    for ours, ref in pairs:
        if ours in rows.index and ref in rows.index:
            for col, what in (("mean_f1", "optimistic"), (HONEST, "honest")):
                name = f"{ours} against {ref}, mean F1 ({what})"
                out.append((name, float(rows.loc[ours, col]), float(rows.loc[ref, col])))
    return out


def run(
    out: Path, tracks: int, frames: int, seeds: int, seed: int, rows: tuple[str, ...] = ROWS
) -> tuple[pd.DataFrame, dict, pd.DataFrame, list]:
    """Everything under `out`, training the ablation `rows` (all by default; the checks need
    CHECKED_ROWS) -> (table, all-positive F1, frame subsets, checks)."""
    out.mkdir(parents=True, exist_ok=True)
    data, models, manifest = prepare(out, tracks, frames, seed)
    store = out / "features.zarr"
    extract(
        manifest,
        store,
        f"dinov2={models / 'dinov2'},classical",
        f"wavlm={models / 'wavlm'},logmel",
        "--no-progress",
    )
    chosen = None if tuple(rows) == ROWS else list(rows)
    csv = ablate(store, manifest, out / "ablation", seeds, SYNTH_OVERRIDES, rows=chosen)
    table = pd.read_csv(csv)
    trivial = all_positive_f1(pd.read_parquet(manifest))
    temporal = [r for r in ("+HGA", "+AG-SSM", "+ASL", "weighted BCE") if r in rows]
    subsets = subset_scores(out / "ablation", data, temporal, seeds)
    return table, trivial, subsets, checks(table, trivial, subsets)


def fm_note(table: pd.DataFrame) -> str:
    """What the FM step is on this world, in figures, and why it is not the paper's."""
    rows = table.set_index("row")
    f1 = rows["mean_f1"]
    best = str(f1.idxmax())
    return (
        "**The FM step on this world.** The paper's step from the baseline to foundation models "
        "(36.50 to 52.41 mean F1 on Aff-Wild2) is not reproduced here: the classical baseline "
        f"scores {f1['baseline']:.3f} and +FM {f1['+FM']:.3f} (honest "
        f"{rows.loc['baseline', HONEST]:.3f} and {rows.loc['+FM', HONEST]:.3f}); the best row is "
        f"{best} ({f1[best]:.3f}). The synthetic AUs are drawn geometric changes of one face, "
        'which the FHOG of the crop reads almost directly, while the "foundation" models are '
        "tiny random encoders (an untrained patch embedding and a few random layers), so this "
        "world cannot show what pretrained DINOv2 and WavLM add; that is a question for "
        "Aff-Wild2. The check above records the direction measured here."
    )


def to_markdown(
    table: pd.DataFrame, trivial: dict, subsets: pd.DataFrame, results: list, command: str
) -> str:
    from data_manifest.aus import AUS

    lines = [
        "## Proving ground: the ABAW10 ablation on the synthetic AU world",
        "",
        f"Command: `{command}`",
        "",
        f"Setup: {os.cpu_count()} CPU cores; tiny random DINOv2 (8 x 8 patch grid) and WavLM "
        "(`auwild-extract tiny-models --size demo`), classical FHOG + landmark geometry and "
        "log-mel audio; every row trained with "
        f"`--set {' '.join(SYNTH_OVERRIDES)}`. Validation mean F1: **F1** at thresholds tuned on "
        "the validation split (optimistic, as the paper's tables), **honest** at thresholds from "
        "the other half of the validation tracks (each half decided by the other's thresholds, "
        "decisions pooled); the best epoch is chosen on validation in both. Per-AU columns are "
        "the optimistic F1. With several seeds, every figure is the mean over them. Rows up to "
        "+AG-SSM train with plain BCE; weighted BCE is +AG-SSM with automatic positive weights.",
        "",
        "| row | F1 | honest | " + " | ".join(AUS) + " |",
        "|" + "---|" * (3 + len(AUS)),
    ]
    several = "mean_f1_std" in table.columns
    for _, r in table.iterrows():
        f1 = f"{r['mean_f1']:.3f}" + (f" ± {r['mean_f1_std']:.3f}" if several else "")
        honest = f"{r[HONEST]:.3f}" + (f" ± {r[HONEST + '_std']:.3f}" if several else "")
        cells = [f1, honest] + [f"{r[a]:.3f}" for a in AUS]
        lines.append("| " + " | ".join([str(r["row"]), *cells]) + " |")
    lines.append(
        "| all-positive | "
        + " | ".join([f"{trivial['mean_f1']:.3f}", "-"] + [f"{trivial[a]:.3f}" for a in AUS])
        + " |"
    )
    lines += [
        "",
        "Frame subsets of the validation split (from synth_truth): mean F1 on the spoiled frames "
        "(corrupted, occluded or mouth hidden) and AU25/AU26 F1 where the mouth is hidden.",
        "",
        "| row | spoiled frames, mean F1 | mouth hidden, AU25/AU26 |",
        "|---|---|---|",
    ]
    for row, r in subsets.iterrows():
        lines.append(f"| {row} | {r['spoiled_mean_f1']:.3f} | {r['mouth_hidden_au25_26']:.3f} |")
    lines += ["", "| check | ours | reference | passed |", "|---|---|---|---|"]
    for claim, ours, ref, ok in results:
        lines.append(f"| {claim} | {ours:.3f} | {ref:.3f} | {'yes' if ok else 'NO'} |")
    compared = reported(table)
    if compared:
        lines += [
            "",
            "Reported, not checked (the imbalance remedies; one seed does not tell them apart):",
            "",
            "| comparison | row | reference | difference |",
            "|---|---|---|---|",
        ]
        for name, ours, ref in compared:
            lines.append(f"| {name} | {ours:.3f} | {ref:.3f} | {ours - ref:+.3f} |")
    lines += ["", fm_note(table)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", default="bench_out/proving_ground")
    ap.add_argument("--tracks", type=int, default=24)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    command = (
        "python -m bench.proving_ground " + f"--tracks {args.tracks} --frames {args.frames} "
        f"--seeds {args.seeds} --seed {args.seed}"
    )
    table, trivial, subsets, results = run(
        Path(args.out), args.tracks, args.frames, args.seeds, args.seed
    )
    text = to_markdown(table, trivial, subsets, results, command)
    print(text)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "proving_ground.md").write_text(text)
    (Path(args.out) / "proving_ground.json").write_text(
        json.dumps(
            {
                "trivial": trivial,
                "subsets": subsets.to_dict(orient="index"),
                "checks": [list(r) for r in results],
                "reported": [list(r) for r in reported(table)],
            },
            indent=2,
        )
    )
    return 0 if all(ok for *_, ok in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
