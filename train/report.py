"""A run's report: one self-contained HTML page a researcher can send (figures inlined).

RUN/report.html for the validation split, RUN/report_<split>.html for any other. It shows the
run's details (recipe, resolved config, store and fingerprints, dates, version), both F1
figures (the optimistic one, thresholds tuned on the split scored, and an honest one when the
run's metrics carry it), the per-AU table, training curves, PR curves, F1 against positive rate
and against threshold, per-track F1, AU co-occurrence in labels and decisions, and timelines of
chosen tracks. Predictions come from `train/predict.py`, so the page scores what eval scores.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from data_manifest.aus import AUS
from data_manifest.shared_files import write_text_atomic
from data_manifest.user_error import UserError
from train import report_figures as F
from train.metrics import f1_per_au, mean_f1, mean_over_defined, score
from train.predict import HONEST_KEY, Predictions, evaluate_run, predict_split
from train.report_html import Section, details, esc, figure, key_values, num, page, table
from train.report_stats import cooccurrence, masked_like, per_track_f1, pick_tracks
from train.run import CONFIG_FILE, model_dirs, read_history, read_run_info, thresholds_of

log = logging.getLogger(__name__)

TRACK_RULE = "the tracks with the best, median and worst per-track F1"
SECTIONS = (
    "run",
    "per-au",
    "curves",
    "pr",
    "f1-rate",
    "f1-threshold",
    "tracks",
    "cooccurrence",
    "timeline",
)


def report_path(run: str | Path, split: str) -> Path:
    return Path(run) / ("report.html" if split == "val" else f"report_{split}.html")


def build_report(
    run: str | Path,
    track: str | list[str] | None = None,
    split: str = "val",
    device: str = "auto",
) -> Path:
    """Write the report of `split` and return its path.

    The scores come from RUN/metrics.json when it holds this split; when there is no
    metrics.json, eval runs first and writes it; when it holds another split, the scores are
    computed here from the predictions and metrics.json is left as it is."""
    run = Path(run)
    info = read_run_info(run)
    dirs = model_dirs(run)
    metas = [_checkpoint_meta(d) for d in dirs]
    metrics, source = _saved_metrics(run, split, device)
    preds = predict_split(run, split, device=device)
    labels = {t: preds.tracks[t].labels for t in preds.order}
    face = {t: np.asarray(preds.tracks[t].face_valid, bool) for t in preds.order}
    probs = np.concatenate([preds.probs[t] for t in preds.order])  # (N, A)
    binary = np.concatenate([preds.binary[t] for t in preds.order])  # (N, A)
    y = np.concatenate([labels[t] for t in preds.order])  # (N, A)
    if not (y >= 0).any():
        raise UserError(f"split {split!r} has no labelled frame to report on")
    if metrics is None:
        metrics = _score_here(probs, binary, y, _thresholds(metas))
        source = (
            "computed for this page from the predictions (RUN/metrics.json holds another "
            f"split; auwild-train eval RUN --split {split} rewrites it for this one)"
        )
    thr = np.array([metrics["thresholds"][a] for a in AUS])
    tracks = per_track_f1(preds.order, labels, preds.binary, face)
    chosen = _timeline_tracks(track, preds, tracks, split)

    label_cond = cooccurrence(y)[1]
    pred_cond = cooccurrence(masked_like(binary, y))[1]
    sections = [
        Section("run", "Run", _run_section(run, info, metas, metrics, source, split, preds)),
        Section("per-au", "Per-AU scores", _au_table(metrics, binary, y)),
        Section("curves", "Training curves", _curves(dirs)),
        Section(
            "pr",
            "Precision-recall curves",
            figure(
                F.pr_curves(probs, y, thr),
                f"Precision against recall per AU on the {split} split (labelled frames), one "
                "point per distinct probability taken as threshold. Red dot: the run's chosen "
                "threshold. Dashed line: the positive rate, the precision of a detector "
                "without skill.",
                "precision-recall curves",
            ),
        ),
        Section(
            "f1-rate",
            "F1 against positive rate",
            figure(
                F.f1_vs_rate(metrics["per_au_f1"], metrics["positive_rate"]),
                f"Per-AU F1 on the {split} split against the AU's positive rate p. Dashed: "
                "2p/(1+p), the F1 of marking every frame positive; an AU near that curve has "
                "learned little beyond its base rate.",
                "F1 against positive rate",
            ),
        ),
        Section(
            "f1-threshold",
            "F1 against threshold",
            figure(
                F.f1_threshold(probs, y, thr),
                f"F1 per AU on the {split} split at thresholds 0.02 to 0.98; red: the run's "
                "chosen threshold. A flat top means the score does not hang on the threshold.",
                "F1 against threshold",
            ),
        ),
        Section("tracks", "Per-track F1", _track_section(tracks, split)),
        Section(
            "cooccurrence",
            "AU co-occurrence",
            figure(
                F.cooccurrence(label_cond, pred_cond),
                f"Left: in the labels of the {split} split, the share of frames with AU i on "
                "in which AU j is on too (percent; frames where AU j is unknown left out). "
                "Right: the same for the run's decisions on the same frames. Differences show "
                "AU pairs the model couples more or less than the annotators did.",
                "AU co-occurrence in labels and decisions",
            ),
        ),
        Section("timeline", "Timelines", _timelines(chosen, preds, labels, face, thr, track)),
    ]
    title = f"auwild report: run {run.resolve().name}, {split} split"
    out = report_path(run, split)
    write_text_atomic(out, page(title, sections))
    return out


# ----------------------------------------------------------------------------- scores


def _saved_metrics(run: Path, split: str, device: str) -> tuple[dict | None, str]:
    path = run / "metrics.json"
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("split", "val") == split:
            return saved, "RUN/metrics.json (written by auwild-train eval)"
        return None, ""
    return (
        evaluate_run(run, split, device=device),
        "auwild-train eval, run for this page (wrote RUN/metrics.json)",
    )


def _score_here(
    probs: np.ndarray, binary: np.ndarray, y: np.ndarray, thr: np.ndarray
) -> dict[str, Any]:
    """eval's keys from stacked predictions; F1 from the run's own decisions."""
    m = score(probs, y, thr)
    f1 = f1_per_au(binary, y)
    m["per_au_f1"] = {a: float(v) for a, v in zip(AUS, f1)}
    m["mean_f1"] = mean_over_defined(f1, y)
    m["mean_f1_at_0.5"] = mean_f1((probs >= 0.5).astype(np.int8), y)
    m["thresholds"] = {a: float(t) for a, t in zip(AUS, thr)}
    return m


def _checkpoint_meta(model_dir: Path) -> dict[str, Any]:
    """The metadata beside the checkpoint predict uses (best, else last); {} when none."""
    for name in ("best.json", "last.json"):
        if (model_dir / name).exists():
            meta = json.loads((model_dir / name).read_text())
            meta["_file"] = str(model_dir / name)
            return meta
    return {}


def _thresholds(metas: list[dict[str, Any]]) -> np.ndarray:
    """The chosen thresholds (A,); the mean over fold models for a fold run."""
    return np.mean([thresholds_of(m) for m in metas], axis=0)


# ----------------------------------------------------------------------------- sections


def _run_section(run, info, metas, metrics, source, split, preds: Predictions) -> str:
    folds = int(info.get("folds", 0) or 0)
    tuned_on = "each fold model's held-out tracks" if folds else "the val split"
    optimistic = f"<span class=big>{num(metrics.get('mean_f1'), 4)}</span> "
    if split == "val":
        optimistic += (
            f"<span class=note>optimistic: thresholds tuned on {tuned_on}, the data scored "
            "here</span>"
        )
    else:
        optimistic += f"thresholds tuned on {tuned_on}, scored on the {esc(split)} split" + (
            " (the model was trained on it)" if split == "train" else ""
        )
    honest = metrics.get(HONEST_KEY)
    honest_html = (
        f"<span class=big>{num(honest, 4)}</span> thresholds chosen on data this score never saw"
        if isinstance(honest, (int, float))
        else "not available for this run"
    )
    meta = metas[0] if metas else {}
    config = run / CONFIG_FILE
    config_text = (
        config.read_text() if config.exists() else json.dumps(meta.get("config"), indent=2)
    )
    groups = meta.get("store_fingerprints") or {}
    group_html = "<br>".join(f"{esc(g)}: <code>{esc(f)}</code>" for g, f in sorted(groups.items()))
    ckpt = ", ".join(
        f"{esc(Path(m['_file']).relative_to(run))} (epoch {m.get('epoch', '?')}, "
        f"{_mtime(Path(m['_file']))})"
        for m in metas
        if m
    )
    pairs = [
        (
            "split reported",
            f"<b>{esc(split)}</b> ({len(preds.order)} tracks in the figures; scores over "
            f"{metrics.get('n_frames', '?')} labelled frames)",
        ),
        ("mean F1 (optimistic)" if split == "val" else "mean F1 (run's thresholds)", optimistic),
        ("mean F1 (honest)", honest_html),
        ("mean F1 at threshold 0.5", num(metrics.get("mean_f1_at_0.5"), 4)),
        ("scores from", esc(source + (f"; {metrics['note']}" if metrics.get("note") else ""))),
        ("recipe", esc(info.get("recipe", "?"))),
        ("models", f"{folds} fold models, combined" if folds else "one model"),
        ("run", esc(run.resolve())),
        ("store", esc(info.get("store", "?"))),
        ("store fingerprint", f"<code>{esc(_store_fingerprint(info.get('store', '')))}</code>"),
        ("group fingerprints (trained on)", group_html or "none recorded"),
        ("manifest", esc(info.get("manifest", "?"))),
        ("checkpoint", ckpt or "none"),
        ("report written", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("auwild version", esc(_version())),
    ]
    body = key_values(pairs) + details("resolved configuration (config.json)", config_text)
    if "fold_mean_f1" in metrics:
        body += (
            "<p>Mean F1 of each fold model on its held-out tracks: "
            + ", ".join(num(x) for x in metrics["fold_mean_f1"])
            + ".</p>"
        )
    if folds:
        body += (
            "<p class=note>Fold run: the figures use the combined fold models, which saw most "
            "of these tracks in training; threshold marks show the mean of the fold models' "
            "thresholds.</p>"
        )
    return body


def _au_table(metrics: dict[str, Any], binary: np.ndarray, y: np.ndarray) -> str:
    known = y >= 0
    called = np.where(
        known.sum(0) > 0, ((binary > 0) & known).sum(0) / np.maximum(known.sum(0), 1), np.nan
    )
    rows = [
        [
            au,
            *(num(metrics.get(k, {}).get(au)) for k in ("per_au_f1", "thresholds", "auc", "ap")),
            num(metrics.get("positive_rate", {}).get(au)),
            num(float(called[a])),
        ]
        for a, au in enumerate(AUS)
    ]
    rows.append(["mean", num(metrics.get("mean_f1")), "", "", "", "", ""])
    return table(
        ["AU", "F1", "threshold", "AUC", "AP", "positive rate", "predicted rate"], rows
    ) + (
        "<p>F1 at the chosen threshold; AUC and AP do not depend on it. Positive rate: share "
        "of labelled frames with the AU on; predicted rate: share the run marks on.</p>"
    )


def _curves(dirs: list[Path]) -> str:
    histories = [read_history(d) for d in dirs]
    if not any(histories):
        return "<p>No training history (history.jsonl is empty or missing).</p>"
    return figure(
        F.curves(histories),
        "Left: training loss and validation loss per epoch. Right: validation mean F1 per "
        "epoch, at thresholds tuned on validation each epoch (optimistic) and at 0.5.",
        "training curves",
    )


def _track_section(tracks, split: str) -> str:
    order = tracks.ranked()
    mean = tracks.mean
    rows = [
        [
            str(rank + 1),
            tracks.tracks[i],
            str(int(tracks.n_labelled[i])),
            f"{100 * tracks.face_rate[i]:.0f}%",
            str(int(tracks.present[i].sum())),
            num(mean[i]),
            num(float(tracks.f1[i].mean())),
        ]
        for rank, i in enumerate(order)
    ]
    return (
        figure(
            F.track_f1(tracks),
            f"F1 of each {split} track (rows, best first; the best and worst 30 when there are "
            "more than 60) and AU (columns) at the run's "
            "decisions; grey where the track has no positive label for the AU. Right column: "
            "the track's mean F1 over the AUs it shows.",
            "per-track F1",
        )
        + table(
            [
                "rank",
                "track",
                "labelled frames",
                "face",
                "AUs present",
                "mean F1 (present AUs)",
                "mean F1 (all 12)",
            ],
            rows,
            left=2,
        )
        + "<p>Mean F1 (present AUs) averages only the AUs with a positive label in the track; "
        "mean F1 (all 12) counts each absent AU as 0, as the ABAW score does for an AU "
        "without a positive label.</p>"
    )


def _timeline_tracks(track, preds: Predictions, tracks, split: str) -> list[tuple[str, str]]:
    if track:
        wanted = [track] if isinstance(track, str) else list(track)
        missing = [t for t in wanted if t not in preds.tracks]
        if missing:
            raise UserError(f"track {missing[0]!r} is not in split {split!r}")
        return [(t, "asked for with --track") for t in dict.fromkeys(wanted)]
    return pick_tracks(tracks)


def _timelines(chosen, preds: Predictions, labels, face, thr, asked) -> str:
    rule = "the tracks given with --track" if asked else TRACK_RULE
    body = f"<p>Tracks shown: {esc(rule)}.</p>"
    for t, why in chosen:
        body += figure(
            F.timeline(t, preds.probs[t], preds.binary[t], labels[t], face[t], thr),
            f"{t} ({why}): one row per AU, AU1 on top. In each row, bottom orange strip: the "
            "run's decision is on; above it, blue: probability from 0 to 1 over the band, "
            "dotted red: threshold, green: label on, purple: label unknown. Grey columns: "
            "frames without a face (their probabilities follow the run's faceless rule).",
            f"timeline of {t}",
        )
    return body


# ----------------------------------------------------------------------------- details


def _mtime(path: Path) -> str:
    t = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M UTC")


def _version() -> str:
    try:
        return metadata.version("auwild")
    except metadata.PackageNotFoundError:
        return "unknown (auwild is not installed as a package)"


def _store_fingerprint(url: str) -> str:
    """The store's own fingerprint (root attributes), or why it could not be read."""
    from extract.store import StoreReader

    try:
        return str(StoreReader(str(url)).fingerprint or "none recorded")
    except Exception as exc:  # shown on the page, not fatal: predict already read the store
        return f"not read: {type(exc).__name__}: {exc}"
