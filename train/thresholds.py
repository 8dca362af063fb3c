"""Per-AU decision thresholds tuned on validation to maximise each AU's F1.

Rare AUs (AU23, AU24) score far better with a threshold below 0.5; the tuned thresholds are
stored in the checkpoint metadata and used by eval and predict.
"""

from __future__ import annotations

import numpy as np

from train.metrics import binarize, f1_per_au

DEFAULT_THRESHOLD = 0.5


def best_threshold(scores: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """(threshold, F1) maximising F1 of `scores >= threshold` for one AU (exact search).

    Sorting once gives F1 at every distinct cut: predicting the top k positive gives
    F1 = 2 TP_k / (k + P). The threshold is the midpoint between the scores either side of
    the best cut; with no positive labels the default 0.5 is kept."""
    target = target.astype(bool)
    n_pos = int(target.sum())
    if n_pos == 0 or len(scores) == 0:
        return DEFAULT_THRESHOLD, 0.0
    order = np.argsort(-scores, kind="mergesort")
    s = scores[order].astype(np.float64)
    tp = np.cumsum(target[order])
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # cuts only between distinct scores
    k = last + 1
    f1 = 2 * tp[last] / (k + n_pos)
    best = int(np.argmax(f1))
    lo = s[last[best]]
    hi_idx = last[best] + 1
    thr = (lo + s[hi_idx]) / 2 if hi_idx < len(s) else lo
    return float(thr), float(f1[best])


def tune_thresholds(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-AU thresholds (A,) from probs (N, A) and labels (N, A) with -1 unknown."""
    out = np.full(labels.shape[1], DEFAULT_THRESHOLD)
    for a in range(labels.shape[1]):
        known = labels[:, a] >= 0
        out[a], _ = best_threshold(probs[known, a], labels[known, a] == 1)
    return out


def f1_curve(probs: np.ndarray, labels: np.ndarray, grid: np.ndarray | None = None):
    """F1 per AU at each threshold of `grid`: returns (grid (G,), f1 (G, A)) for the report."""
    grid = np.linspace(0.02, 0.98, 49) if grid is None else np.asarray(grid)
    curve = np.stack([f1_per_au(binarize(probs, t), labels) for t in grid])
    return grid, curve


def track_halves(track_ids: list[str]) -> dict[str, int]:
    """Two halves of a split's tracks, deterministically: sorted by id, alternating 0, 1, 0, ...

    Alternating over sorted ids spreads videos (ids share a video prefix) over both halves."""
    return {t: i % 2 for i, t in enumerate(sorted(track_ids))}


def cross_fitted(
    probs: np.ndarray, labels: np.ndarray, half: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Decisions whose thresholds never saw the frames they decide.

    probs (N, A), labels (N, A) with -1 unknown, half (N,) in {0, 1} (the frame's track half).
    Thresholds tuned on half 1 decide half 0 and vice versa -> (binary (N, A) int8,
    thresholds (2, A): row h is what decided half h)."""
    half = np.asarray(half)
    if probs.shape != labels.shape or half.shape != (len(probs),):
        raise ValueError(
            f"shapes differ: probs {probs.shape}, labels {labels.shape}, half {half.shape}"
        )
    binary = np.zeros(probs.shape, dtype=np.int8)
    thr = np.full((2, probs.shape[1]), DEFAULT_THRESHOLD)
    for h in (0, 1):
        other = half != h
        thr[h] = tune_thresholds(probs[other], labels[other])
        binary[half == h] = binarize(probs[half == h], thr[h])
    return binary, thr
