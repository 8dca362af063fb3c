"""Video-grouped K-fold cross-validation and the combination of fold models.

Folds are built over train and val pooled, grouped by `video_id`, so a video's `_left` and
`_right` tracks (which share audio and scene) never sit on both sides of a split.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data_manifest.user_error import UserError

COMBINE_RULES = ("vote", "mean")


def video_of(row: pd.Series) -> str:
    vid = row.get("video_id", "") if hasattr(row, "get") else ""
    if isinstance(vid, str) and vid:
        return vid
    tid = str(row["track_id"])
    for suffix in ("_left", "_right"):
        if tid.endswith(suffix):
            return tid[: -len(suffix)]
    return tid


class FoldsError(UserError, ValueError):
    """A fold count the tracks cannot fill."""


def assign_folds(tracks: pd.DataFrame, k: int, seed: int = 0) -> dict[str, int]:
    """track_id -> fold in [0, k). Videos are shuffled by `seed`, then placed largest first
    into the fold with the fewest annotated frames so far (balanced by `n_annotated` when the
    column is there, by track count otherwise)."""
    if k < 2:
        raise ValueError(f"need at least 2 folds, got {k}")
    videos = tracks.apply(video_of, axis=1).to_numpy()
    weight = (
        tracks["n_annotated"].clip(lower=1).to_numpy(dtype=np.float64)
        if "n_annotated" in tracks
        else np.ones(len(tracks))
    )
    per_video: dict[str, float] = {}
    for v, w in zip(videos, weight):
        per_video[v] = per_video.get(v, 0.0) + float(w)
    names = sorted(per_video)
    if len(names) < k:
        raise FoldsError(
            f"{len(names)} videos cannot fill {k} folds: use --folds {len(names)} or fewer, "
            "or --set folds.k=0 to train on the manifest's train/val split"
        )
    rng = np.random.default_rng(seed)
    names = [names[i] for i in rng.permutation(len(names))]
    names.sort(key=lambda v: -per_video[v])  # stable: equal sizes keep the shuffled order
    load = np.zeros(k)
    fold_of_video: dict[str, int] = {}
    for v in names:
        f = int(np.argmin(load))
        fold_of_video[v] = f
        load[f] += per_video[v]
    return {str(t): fold_of_video[v] for t, v in zip(tracks["track_id"], videos)}


def combine(probs: list[np.ndarray], thresholds: list[np.ndarray], rule: str = "vote"):
    """Combine K fold models' predictions for one track: probs K x (T, A), thresholds K x (A,).

    "vote": each model votes with its own thresholds, a frame is positive when more than half
    vote for it; an exact tie (even K) goes to the mean margin (prob - threshold) > 0.
    "mean": mean probability against the mean threshold.
    Returns (mean probability (T, A), 0/1 (T, A))."""
    if rule not in COMBINE_RULES:
        raise ValueError(f"unknown combine rule {rule!r}; known: {COMBINE_RULES}")
    p = np.stack(probs)  # (K, T, A)
    thr = np.stack(thresholds)[:, None, :]  # (K, 1, A)
    mean_p = p.mean(0)  # (T, A)
    if rule == "mean":
        return mean_p, (mean_p >= thr.mean(0)).astype(np.int8)
    votes = (p >= thr).sum(0)  # (T, A)
    k = p.shape[0]
    margin = (p - thr).mean(0)
    out = np.where(2 * votes > k, 1, np.where(2 * votes < k, 0, (margin > 0).astype(int)))
    return mean_p, out.astype(np.int8)
