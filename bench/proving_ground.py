"""The proving ground: does the ABAW10 system learn on the synthetic AU world, and does each
component help where the data says it should?

    python -m bench.proving_ground [--tracks 24] [--frames 300] [--seeds 2] [--out DIR]

Steps: a synthetic dataset with a fixed seed, tiny random encoders, one store, the ABAW10
ablation rows (`auwild-train ablate`), and the trivial predictor that marks every frame
positive. Checks (all on the validation split):

- the full system (+ASL) beats the all-positive predictor by at least 0.25 mean F1;
- HGA beats pooled features (+FM) on the region-local AUs;
- audio helps AU25/AU26: +FM (CLS + audio) over the baseline (CLS alone), and the audio-guided
  temporal model (+AG-SSM) over frame-wise +HGA on the frames whose mouth is hidden (where the
  lips cannot be seen, the voice and the neighbouring frames must tell);
- temporal modelling (+AG-SSM) helps under frame noise: mean F1 over +HGA, overall and on the
  frames the generator spoiled (corrupted, occluded, mouth hidden).
The asymmetric loss (+ASL against +AG-SSM, BCE with automatic positive weights) is reported, not
checked: here the two imbalance remedies are within one seed's noise of each other
(bench/results/proving_ground_diagnosis.md).

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
        over(
            "+HGA over +FM on region-local AUs",
            mean("+HGA", REGION_LOCAL_AUS),
            mean("+FM", REGION_LOCAL_AUS),
        ),
        over(
            "audio (+FM) over no audio (baseline) on AU25/AU26",
            mean("+FM", AUDIO_AUS),
            mean("baseline", AUDIO_AUS),
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


def run(
    out: Path, tracks: int, frames: int, seeds: int, seed: int
) -> tuple[pd.DataFrame, dict, pd.DataFrame, list]:
    out.mkdir(parents=True, exist_ok=True)
    data, models, manifest = prepare(out, tracks, frames, seed)
    store = out / "features.zarr"
    extract(
        manifest,
        store,
        f"dinov2={models / 'dinov2'}",
        f"wavlm={models / 'wavlm'},logmel",
        "--no-progress",
    )
    table = pd.read_csv(ablate(store, manifest, out / "ablation", seeds, SYNTH_OVERRIDES))
    trivial = all_positive_f1(pd.read_parquet(manifest))
    subsets = subset_scores(out / "ablation", data, ["+HGA", "+AG-SSM", "+ASL"], seeds)
    return table, trivial, subsets, checks(table, trivial, subsets)


def to_markdown(
    table: pd.DataFrame, trivial: dict, subsets: pd.DataFrame, results: list, command: str
) -> str:
    from data_manifest.aus import AUS

    cols = ["row", "mean_f1", *AUS]
    lines = [
        "## Proving ground: the ABAW10 ablation on the synthetic AU world",
        "",
        f"Command: `{command}`",
        "",
        f"Setup: {os.cpu_count()} CPU cores; tiny random DINOv2 (8 x 8 patch grid) and WavLM "
        "(`auwild-extract tiny-models --size demo`); every row trained with "
        f"`--set {' '.join(SYNTH_OVERRIDES)}`. Validation mean F1 at tuned thresholds; with "
        "several seeds, every figure is the mean over them.",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    for _, r in table.iterrows():
        cells = [f"{r[c]:.3f}" for c in cols[1:]]
        if "mean_f1_std" in table.columns:  # several seeds: mean +- standard deviation
            cells[0] += f" ± {r['mean_f1_std']:.3f}"
        lines.append("| " + " | ".join([str(r["row"]), *cells]) + " |")
    lines.append("| all-positive | " + " | ".join(f"{trivial[c]:.3f}" for c in cols[1:]) + " |")
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
            },
            indent=2,
        )
    )
    return 0 if all(ok for *_, ok in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
