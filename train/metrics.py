"""ABAW AU scores: the unweighted mean over the 12 AUs of binary F1, frames labelled -1 excluded.

An AU with no defined label at all in the scored frames (every frame -1, e.g. an AU a fold's
annotators never coded) has no F1; it is left out of the mean rather than counted as 0, and
`score` names it in "excluded_aus". An AU with defined labels but no positive keeps the
scikit-learn convention (F1 0) and stays in the mean.

AUC and average precision per AU are for diagnosis (they do not depend on a threshold).
Plain numpy, so scoring needs no scikit-learn; the tests hold these equal to scikit-learn.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from data_manifest.aus import AUS


def _check(values: np.ndarray, labels: np.ndarray) -> None:
    if values.shape != labels.shape or values.ndim != 2:
        raise ValueError(f"expected two (N, n_aus) arrays, got {values.shape} and {labels.shape}")


def f1_per_au(preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Binary F1 per AU. preds (N, A) 0/1, labels (N, A) in {-1, 0, 1}; -1 frames excluded.

    An AU with no positive label and no positive prediction scores 0 (scikit-learn's
    zero_division default)."""
    _check(preds, labels)
    known = labels >= 0  # (N, A)
    pos = (labels == 1) & known
    hit = (preds > 0) & known
    tp = (hit & pos).sum(0).astype(np.float64)
    fp = (hit & ~pos).sum(0).astype(np.float64)
    fn = (~hit & pos & known).sum(0).astype(np.float64)
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)


def defined_aus(labels: np.ndarray) -> np.ndarray:
    """(A,) bool: AUs with at least one frame labelled 0 or 1. labels (N, A) in {-1, 0, 1}."""
    if labels.ndim != 2:
        raise ValueError(f"expected an (N, n_aus) label array, got {labels.shape}")
    return (labels >= 0).any(0)


def mean_over_defined(per_au: np.ndarray, labels: np.ndarray) -> float:
    """Mean of per-AU values (A,) over the AUs `labels` defines; 0.0 when none is defined (the
    caller reports the excluded AUs)."""
    keep = defined_aus(labels)
    return float(per_au[keep].mean()) if keep.any() else 0.0


def mean_f1(preds: np.ndarray, labels: np.ndarray) -> float:
    """The ABAW AU score: unweighted mean of per-AU F1 over the AUs with defined labels."""
    return mean_over_defined(f1_per_au(preds, labels), labels)


def binarize(probs: np.ndarray, thresholds: np.ndarray | float) -> np.ndarray:
    """0/1 predictions: prob >= threshold per AU. probs (N, A), thresholds (A,) or scalar."""
    return (probs >= np.asarray(thresholds, dtype=np.float64)).astype(np.int8)


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (1-based), ties sharing their mean rank."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.r_[0, np.flatnonzero(np.diff(xs)) + 1]
    ends = np.r_[starts[1:], len(xs)]
    avg = (starts + ends + 1) / 2.0  # mean of 1-based ranks starts+1 .. ends
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def auc_binary(scores: np.ndarray, target: np.ndarray) -> float:
    """ROC AUC of one AU (Mann-Whitney with tied ranks); NaN if only one class is present."""
    n_pos = int(target.sum())
    n_neg = len(target) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _ranks(scores.astype(np.float64))
    return float((ranks[target.astype(bool)].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def ap_binary(scores: np.ndarray, target: np.ndarray) -> float:
    """Average precision of one AU: sum over distinct thresholds of (R_n - R_{n-1}) * P_n."""
    n_pos = int(target.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    s = scores[order]
    t = target[order].astype(np.float64)
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each distinct score
    tps = np.cumsum(t)[last]
    precision = tps / (last + 1)
    recall = tps / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def per_au(fn, probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    _check(probs, labels)
    out = np.full(labels.shape[1], np.nan)
    for a in range(labels.shape[1]):
        known = labels[:, a] >= 0
        out[a] = fn(probs[known, a], labels[known, a] == 1)
    return out


def score(
    probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray | float = 0.5
) -> dict[str, Any]:
    """Everything eval reports: mean F1, per-AU F1, AUC, AP and positive rates, keyed by AU name.

    "excluded_aus" lists the AUs left out of mean_f1 (no defined label); their per_au_f1 is 0.0
    so tables keep one column per AU, and they are named here so no reader takes it for a score.
    """
    preds = binarize(probs, thresholds)
    f1 = f1_per_au(preds, labels)
    auc = per_au(auc_binary, probs, labels)
    ap = per_au(ap_binary, probs, labels)
    known = labels >= 0
    rate = np.where(known.sum(0) > 0, (labels == 1).sum(0) / np.maximum(known.sum(0), 1), np.nan)
    names = AUS[: labels.shape[1]]

    def named(v: np.ndarray) -> dict[str, float | None]:
        return {n: (None if np.isnan(x) else float(x)) for n, x in zip(names, v)}

    return {
        "mean_f1": mean_over_defined(f1, labels),
        "excluded_aus": [n for n, ok in zip(names, defined_aus(labels)) if not ok],
        "per_au_f1": named(f1),
        "auc": named(auc),
        "ap": named(ap),
        "positive_rate": named(rate),
        "n_frames": int(known.any(1).sum()),
    }
