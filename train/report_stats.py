"""The numbers behind the report's figures: PR curves, per-track F1, AU co-occurrence.

Plain numpy over stacked frames; labels are (N, A) in {-1, 0, 1} with -1 unknown, as in
`train/metrics.py`, whose F1 these reuse so the report and eval never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from train.metrics import f1_per_au


def pr_curve(scores: np.ndarray, target: np.ndarray):
    """(precision, recall, thresholds) of one AU, in scikit-learn's convention.

    One point per distinct score taken as threshold (`scores >= t`), thresholds increasing,
    recall decreasing, and a final point (precision 1, recall 0) with no threshold."""
    target = np.asarray(target).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="mergesort")
    s = scores[order]
    t = target[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each distinct score
    tps = np.cumsum(t)[last].astype(np.float64)
    fps = (last + 1) - tps
    precision = np.where(tps + fps > 0, tps / np.maximum(tps + fps, 1), 0.0)
    recall = tps / tps[-1] if len(tps) and tps[-1] > 0 else np.ones_like(tps)
    return (
        np.r_[precision[::-1], 1.0],
        np.r_[recall[::-1], 0.0],
        s[last][::-1],
    )


def operating_point(scores: np.ndarray, target: np.ndarray, threshold: float):
    """(recall, precision) of `scores >= threshold` for one AU; precision 0 with no positive call."""
    target = np.asarray(target).astype(bool)
    hit = np.asarray(scores) >= threshold
    tp = float((hit & target).sum())
    n_hit, n_pos = float(hit.sum()), float(target.sum())
    return (tp / n_pos if n_pos else 0.0), (tp / n_hit if n_hit else 0.0)


@dataclass
class TrackScores:
    """F1 of every track and AU at the run's decisions, and which AUs each track shows at all."""

    tracks: list[str]
    f1: np.ndarray  # (n_tracks, A) F1 per track and AU
    present: np.ndarray  # (n_tracks, A) bool: the track has at least one positive label
    n_labelled: np.ndarray  # (n_tracks,) frames with at least one known label
    face_rate: np.ndarray  # (n_tracks,) share of frames with a face

    @property
    def mean(self) -> np.ndarray:
        """(n_tracks,) mean F1 over the AUs present in the track; NaN when none is."""
        n = self.present.sum(1)
        total = np.where(self.present, self.f1, 0.0).sum(1)
        return np.where(n > 0, total / np.maximum(n, 1), np.nan)

    def ranked(self) -> list[int]:
        """Track indices from best to worst mean F1; tracks with no present AU last."""
        m = self.mean
        key = np.where(np.isnan(m), -np.inf, m)
        return [int(i) for i in np.argsort(-key, kind="mergesort")]


def per_track_f1(order: list[str], labels: dict, binary: dict, face: dict) -> TrackScores:
    """Per-track F1 (train/metrics.py's f1_per_au on each track's own frames)."""
    f1 = np.stack([f1_per_au(binary[t], labels[t]) for t in order])
    present = np.stack([(labels[t] == 1).any(0) for t in order])
    n_labelled = np.array([int((labels[t] >= 0).any(1).sum()) for t in order])
    face_rate = np.array([float(np.mean(face[t])) if len(face[t]) else 0.0 for t in order])
    return TrackScores(list(order), f1, present, n_labelled, face_rate)


def pick_tracks(scores: TrackScores) -> list[tuple[str, str]]:
    """The default timeline tracks: (track, why) for the best, median and worst mean F1."""
    ranked = [i for i in scores.ranked() if not np.isnan(scores.mean[i])] or scores.ranked()
    picks = [("best", ranked[0]), ("median", ranked[len(ranked) // 2]), ("worst", ranked[-1])]
    out: dict[int, list[str]] = {}
    for why, i in picks:
        out.setdefault(i, []).append(why)
    return [(scores.tracks[i], " and ".join(w) + " per-track F1") for i, w in out.items()]


def cooccurrence(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(counts, conditional) over frames; values (N, A) in {-1, 0, 1}, -1 unknown.

    counts[i, j]: frames where AU i and AU j are both 1. conditional[i, j]: P(AU j = 1 |
    AU i = 1) over the frames where AU i is 1 and AU j is known (NaN when there are none);
    the diagonal is 1 wherever AU i occurs."""
    pos = (values == 1).astype(np.float64)  # (N, A)
    known = (values >= 0).astype(np.float64)
    counts = pos.T @ pos  # (A, A)
    base = pos.T @ known  # (A, A): AU i positive and AU j known
    with np.errstate(invalid="ignore", divide="ignore"):
        conditional = np.where(base > 0, counts / base, np.nan)
    return counts.astype(np.int64), conditional


def masked_like(binary: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Decisions (N, A) with -1 wherever the label is unknown, to compare with the labels."""
    return np.where(labels >= 0, binary, -1).astype(np.int8)
