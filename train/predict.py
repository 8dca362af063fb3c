"""Predictions and evaluation of a run: single models, or fold models combined.

Everything is read through the run directory: the store and manifest paths saved by `fit`
(overridable), the resolved configuration and the per-AU thresholds in the checkpoint.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data_manifest.aus import AUS
from data_manifest.manifest import usable_rows
from data_manifest.shared_files import write_text_atomic
from data_manifest.user_error import UserError
from train import tracks as T
from train.distributed import DistInfo, pick_device
from train.folds import combine
from train.inference import predict_probs, stack_labels
from train.loop import autocast_dtype
from train.metrics import binarize, f1_per_au, mean_f1, mean_over_defined, score
from train.run import CONFIG_FILE, load_model, model_dirs, read_run_info, thresholds_of
from train.thresholds import cross_fitted, track_halves

log = logging.getLogger(__name__)

# metrics.json field: mean F1 at thresholds chosen on data the score never saw
HONEST_KEY = "honest_mean_f1"


@dataclass
class Predictions:
    """Per-track outputs in track order: probabilities (T, A) and 0/1 decisions (T, A)."""

    order: list[str]
    tracks: dict[str, T.Track]
    probs: dict[str, np.ndarray]
    binary: dict[str, np.ndarray]


def _paths(run: str | Path, store: str | None, manifest: str | None) -> tuple[str, str]:
    info = read_run_info(run)
    store = store or info.get("store", "")
    manifest = manifest or info.get("manifest", "")
    if not store or not manifest:
        raise UserError(f"{run}: give --store and --manifest (the run does not name them)")
    return store, manifest


def check_trained_fingerprints(reader, groups: list[str], meta: dict[str, Any], model: str) -> None:
    """Refuse store groups whose fingerprints differ from the ones the model (checkpoint
    metadata `meta`) was trained on; groups it recorded none for pass."""
    now = T.group_fingerprints(reader, groups)
    saved = meta.get("store_fingerprints", {})
    changed = [g for g in groups if saved.get(g) and now.get(g) != saved[g]]
    if changed:
        raise UserError(
            f"{model}: store group(s) {changed} have fingerprints different from the ones "
            "the model was trained on"
        )


def _predict_model(model_dir: Path, reader, rows: pd.DataFrame, device, which: str):
    """(tracks, probs, thresholds, meta) of one model over `rows`."""
    model, meta, config = load_model(model_dir, which, device)
    cfg = config.data
    keys = list(meta["keys"])
    paths = [cfg.features[k] for k in keys] + [cfg.face_valid]
    groups = T.check_groups(reader, paths, list(rows["track_id"]))
    check_trained_fingerprints(reader, groups, meta, str(model_dir))
    tracks = [T.load_track(reader, r, cfg.features, keys, cfg, False) for _, r in rows.iterrows()]
    amp = autocast_dtype(config.optim.precision, device)
    probs = predict_probs(
        model, tracks, keys, cfg, config.optim.batch_size, device, amp, reader, cfg.features
    )
    return tracks, probs, thresholds_of(meta), meta, config


def _rows(manifest: str, split: str, reader, track_list: list[str] | None) -> pd.DataFrame:
    man = T.read_manifest(manifest)
    rows = usable_rows(man[man["split"] == split], what=split).reset_index(drop=True)
    if track_list is not None:
        index = {t: i for i, t in enumerate(rows["track_id"])}
        unknown = [t for t in track_list if t not in index]
        if unknown:
            raise UserError(
                f"track list names {len(unknown)} track(s) not in split {split!r} or not usable "
                f"(manifest status not ok): {unknown[:3]}"
            )
        rows = rows.iloc[[index[t] for t in track_list]].reset_index(drop=True)
    if not len(rows):
        raise UserError(f"{manifest}: no track in split {split!r}")
    have = set(reader.tracks())
    missing = [t for t in rows["track_id"] if t not in have]
    if missing:
        raise UserError(
            f"{len(missing)} track(s) of split {split!r} are not complete in the store, "
            f"e.g. {missing[:3]}; extract them first"
        )
    return rows


def predict_split(
    run: str | Path,
    split: str = "test",
    store: str | None = None,
    manifest: str | None = None,
    which: str = "best",
    device: str = "auto",
    track_list: list[str] | None = None,
) -> Predictions:
    """Predict every track of `split`; fold models are combined by the run's combine rule."""
    store, manifest = _paths(run, store, manifest)
    reader = T.open_store(store)
    rows = _rows(manifest, split, reader, track_list)
    dev = pick_device(device, DistInfo())
    outs = [_predict_model(d, reader, rows, dev, which) for d in model_dirs(run)]
    tracks = {t.track_id: t for t in outs[0][0]}
    order = [str(t) for t in rows["track_id"]]
    if len(outs) == 1:
        _, probs, thr, _, _ = outs[0]
        binary = {t: binarize(p, thr) for t, p in probs.items()}
        return Predictions(order, tracks, probs, binary)
    rule = outs[0][4].folds.combine
    probs, binary = {}, {}
    for t in order:
        probs[t], binary[t] = combine([o[1][t] for o in outs], [o[2] for o in outs], rule)
    return Predictions(order, tracks, probs, binary)


def evaluate_run(
    run: str | Path,
    split: str = "val",
    store: str | None = None,
    manifest: str | None = None,
    which: str = "best",
    device: str = "auto",
) -> dict[str, Any]:
    """Score a run on a labelled split and write RUN/metrics.json.

    Keys: mean_f1, per_au_f1 (AU -> F1 at the tuned thresholds), thresholds (AU -> threshold),
    auc, ap, positive_rate, mean_f1_at_0.5, split, n_frames, note (what each F1 is). A fold run
    on `val` is scored out of fold: each fold model on its own held-out tracks (folds.json), at
    the thresholds it tuned on those same tracks (its validation fold).

    Thresholds tuned on the tracks scored make mean_f1 optimistic (a single run on its
    validation split, a fold run out of fold). Both also get honest_mean_f1 and
    honest_per_au_f1: the scored tracks (each held-out fold's, for folds) in two halves, each
    half decided at thresholds tuned on the other half's predictions (`honest_decisions`),
    decisions pooled and scored once. The best epoch was still chosen on the validation
    tracks, which no figure here undoes."""
    run = Path(run)
    info = read_run_info(run)
    store, manifest = _paths(run, store, manifest)
    dev = pick_device(device, DistInfo())
    folds_file = run / "folds.json"
    if info.get("folds") and split == "val" and folds_file.exists():
        assignment = json.loads(folds_file.read_text())
        reader = T.open_store(store)
        man = T.read_manifest(manifest)
        all_p, all_y, fold_f1, fold_thr, crossed = [], [], [], [], []
        for i, d in enumerate(model_dirs(run)):
            rows = man[man["track_id"].map(assignment.get) == i].reset_index(drop=True)
            tracks, probs, thr, _, _ = _predict_model(d, reader, rows, dev, which)
            p, y = stack_labels(tracks, probs)
            fold_f1.append(mean_f1(binarize(p, thr), y))
            all_p.append(binarize(p, thr).astype(np.float64))
            all_y.append(y)
            fold_thr.append(thr)
            crossed.append(honest_decisions(tracks, probs))
        p, y = np.concatenate(all_p), np.concatenate(all_y)
        metrics = score(p, y, 0.5)
        metrics["fold_mean_f1"] = fold_f1
        thr = np.mean(fold_thr, axis=0)
        # each fold model tuned its thresholds on its validation fold, the tracks scored here
        metrics.update(
            _honest_entry(
                None if any(b is None for b in crossed) else np.concatenate(crossed),
                y,
                "mean_f1: out-of-fold decisions, each fold model on its held-out tracks at "
                "thresholds tuned on those same tracks (optimistic)",
                "the other half of each held-out fold's tracks",
                "a held-out fold has one track, no two halves",
                "each fold model's best epoch was chosen on its held-out tracks in both",
            )
        )
    else:
        preds = predict_split(run, split, store, manifest, which, device)
        tracks = [preds.tracks[t] for t in preds.order]
        p, y = stack_labels(tracks, preds.probs)
        if info.get("folds"):
            thr = np.full(len(AUS), 0.5)
            metrics = score(
                np.concatenate([preds.binary[t] for t in preds.order]).astype(float), y, 0.5
            )
        else:
            thr = thresholds_of(_best_meta(run, which))
            metrics = score(p, y, thr)
            metrics["mean_f1_at_0.5"] = mean_f1(binarize(p, 0.5), y)
            metrics["thresholds_tuned_on"] = _val_split(run)
            metrics.update(honest_f1(tracks, preds.probs, split, metrics["thresholds_tuned_on"]))
    if not (y >= 0).any():
        raise UserError(f"split {split!r} has no labelled frame to score")
    metrics["thresholds"] = {a: float(t) for a, t in zip(AUS, thr)}
    metrics["split"] = split
    write_text_atomic(run / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics


def honest_decisions(tracks: list[T.Track], probs: dict[str, np.ndarray]) -> np.ndarray | None:
    """0/1 decisions (N, A) in `stack_labels` order from thresholds that never saw the frames
    they decide: the tracks in two halves (`track_halves`), each half decided at thresholds tuned
    on the other's predictions (`cross_fitted`). None with fewer than two tracks (no halves)."""
    if len(tracks) < 2:
        return None
    halves = track_halves([t.track_id for t in tracks])
    p, y = stack_labels(tracks, probs)
    half = np.concatenate([np.full(len(t.labels), halves[t.track_id]) for t in tracks])
    binary, _ = cross_fitted(p, y, half)
    return binary


def _honest_entry(
    binary: np.ndarray | None, y: np.ndarray, optimistic: str, source: str, why_not: str, epoch: str
) -> dict[str, Any]:
    if binary is None:
        return {
            HONEST_KEY: None,
            "honest_per_au_f1": None,
            "note": f"{optimistic}; no {HONEST_KEY}: {why_not}",
        }
    f1 = f1_per_au(binary, y)
    return {
        HONEST_KEY: mean_over_defined(f1, y),
        "honest_per_au_f1": {a: float(v) for a, v in zip(AUS, f1)},
        "note": (
            f"{optimistic}; {HONEST_KEY}: thresholds from {source} (sorted ids, alternating), "
            f"decisions pooled (honest for thresholds); {epoch}"
        ),
    }


def honest_f1(
    tracks: list[T.Track], probs: dict[str, np.ndarray], split: str, tuned_on: str = "val"
) -> dict[str, Any]:
    """honest_mean_f1, honest_per_au_f1 (AU -> F1) and a note: the decisions of
    `honest_decisions` pooled and scored once. With one track there are no halves: both figures
    are None and the note says so."""
    optimistic = (
        f"mean_f1: thresholds tuned on {split}, the split scored (optimistic)"
        if split == tuned_on
        else f"mean_f1: thresholds tuned on {tuned_on}, not on {split}"
    )
    _, y = stack_labels(tracks, probs)
    return _honest_entry(
        honest_decisions(tracks, probs),
        y,
        optimistic,
        f"the other half of {split}'s tracks",
        f"{split} has one track, no two halves",
        f"the best epoch was chosen on {tuned_on} in both",
    )


def describe_f1(metrics: dict[str, Any]) -> str:
    """One line naming what each mean F1 of `metrics` (evaluate_run's) is."""
    split = metrics.get("split", "val")
    folds = "fold_mean_f1" in metrics
    line = f"mean F1 {metrics['mean_f1']:.3f}"
    if HONEST_KEY not in metrics:  # a fold run on another split: decisions by the combine rule
        return line
    tuned_on = metrics.get("thresholds_tuned_on", split)
    if folds:
        line += " (out of fold, thresholds tuned on each held-out fold: optimistic)"
        source = "the other half of each held-out fold's tracks"
    elif tuned_on == split:
        line += f" (thresholds tuned on {split}: optimistic)"
        source = f"the other half of {split}'s tracks"
    else:
        line += f" (thresholds tuned on {tuned_on})"
        source = f"the other half of {split}'s tracks"
    honest = metrics[HONEST_KEY]
    if honest is None:
        return line + " / no honest figure (too few tracks for two halves)"
    return line + f" / {honest:.3f} (thresholds from {source}: honest)"


def _val_split(run: Path) -> str:
    """The split a single run tuned its thresholds on (its data.val_split)."""
    path = run / CONFIG_FILE
    if not path.exists():
        return "val"
    return str(json.loads(path.read_text()).get("data", {}).get("val_split", "val"))


def _best_meta(run: Path, which: str) -> dict[str, Any]:
    """The checkpoint metadata beside best.pt (or last.pt)."""
    name = "best.json" if which == "best" and (run / "best.json").exists() else "last.json"
    return json.loads((run / name).read_text())
