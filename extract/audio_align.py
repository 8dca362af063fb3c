"""Pool audio features (native rate) onto video frames by presentation time.

The rule (one rule for every encoder):

1. Video frame i owns the interval [t_i, e_i). Without explicit `frame_ends`,
   e_i = t_{i+1}; the last frame gets t_i + the median frame duration (or
   `last_duration` when given; a single frame without it gets 1/25 s). Times are container presentation times,
   so variable frame rates and stream start offsets need no special case.
2. Audio feature j covers [s_j, f_j) (its receptive field or analysis window, as the
   encoder reports it).
3. The frame's vector is the mean of the features that overlap its interval, each
   weighted by the overlap length |[t_i, e_i) ∩ [s_j, f_j)|.
4. A frame that no feature overlaps (an empty interval, or a frame before / after the
   audio) takes the nearest feature when the gap to it is at most one feature hop (the
   median distance between feature starts); otherwise it gets zeros and `covered=False`.

`pool_to_frames` is the vectorised form (searchsorted over the sorted feature times,
then a loop over the few features any frame can overlap); `pool_to_frames_reference`
is the plain double loop, kept as the oracle the tests hold it to.
"""

from __future__ import annotations

import numpy as np

DEFAULT_LAST_DURATION = 1.0 / 25.0  # seconds; only used for a single frame without an end


def frame_intervals(
    frame_times: np.ndarray,
    frame_ends: np.ndarray | None = None,
    last_duration: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(T,) starts and (T,) ends of frame intervals per rule 1 of the module docstring."""
    t = np.asarray(frame_times, np.float64).reshape(-1)  # (T,)
    if frame_ends is not None:
        e = np.asarray(frame_ends, np.float64).reshape(-1)  # (T,)
        if e.shape != t.shape:
            raise ValueError(f"frame_ends has shape {e.shape}, frame_times {t.shape}")
        return t, e
    e = np.empty_like(t)
    if t.shape[0] == 0:
        return t, e
    e[:-1] = t[1:]
    if t.shape[0] > 1:
        last = float(np.median(np.diff(t)))
    else:
        last = DEFAULT_LAST_DURATION if last_duration is None else float(last_duration)
    if last_duration is not None:
        last = float(last_duration)
    e[-1] = t[-1] + last
    return t, e


def _feature_hop(starts: np.ndarray, ends: np.ndarray) -> float:
    if starts.shape[0] > 1:
        return float(np.median(np.diff(starts)))
    if starts.shape[0] == 1:
        return float(ends[0] - starts[0])
    return 0.0


def _check(feats, starts, ends):
    feats = np.asarray(feats)
    if feats.ndim != 2:
        raise ValueError(f"feats must be (N, D), got shape {feats.shape}")
    s = np.asarray(starts, np.float64).reshape(-1)  # (N,)
    f = np.asarray(ends, np.float64).reshape(-1)  # (N,)
    if not (s.shape[0] == f.shape[0] == feats.shape[0]):
        raise ValueError(f"feats {feats.shape}, starts {s.shape}, ends {f.shape} disagree")
    return feats, s, f


def pool_to_frames(
    feats: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    frame_times: np.ndarray,
    frame_ends: np.ndarray | None = None,
    last_duration: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Overlap-weighted mean of features per video frame (rule in the module docstring).

    feats (N, D), starts/ends (N,) seconds, frame_times (T,) seconds, frame_ends (T,) or None.
    Returns pooled float32 (T, D) and covered bool (T,).
    """
    feats, s, f = _check(feats, starts, ends)
    a, b = frame_intervals(frame_times, frame_ends, last_duration)  # (T,), (T,)
    T, N, D = a.shape[0], feats.shape[0], feats.shape[1]
    pooled = np.zeros((T, D), np.float32)  # output-sized accumulator
    covered = np.zeros(T, bool)
    if T == 0 or N == 0:
        return pooled, covered
    if np.any(np.diff(s) < 0):  # encoders emit sorted features; sort anything else
        order = np.argsort(s, kind="stable")
        feats, s, f = feats[order], s[order], f[order]
    f_max = np.maximum.accumulate(f)  # (N,) non-decreasing bound on ends seen so far
    # features j with s_j < b_i, and j >= first index whose running-max end exceeds a_i
    lo = np.searchsorted(f_max, a, side="right")  # (T,)
    hi = np.searchsorted(s, b, side="left")  # (T,)
    span = np.maximum(hi - lo, 0)  # (T,)
    weight_sum = np.zeros(T, np.float64)
    for k in range(int(span.max()) if T else 0):
        rows = np.nonzero(span > k)[0]  # frames that still have a k-th candidate
        j = lo[rows] + k  # (R,)
        w = np.minimum(b[rows], f[j]) - np.maximum(a[rows], s[j])  # (R,) overlap length
        w = np.where(w > 0, w, 0.0)
        pooled[rows] += (w[:, None] * feats[j]).astype(np.float32)  # (R, D)
        weight_sum[rows] += w
    has = weight_sum > 0
    pooled[has] /= weight_sum[has, None].astype(np.float32)
    covered[has] = True

    # rule 4: nearest feature within one hop for frames with no overlap. Candidates: the
    # feature with the largest end before the frame, the first one past it, and (for an
    # empty interval) the first one spanning its instant; ties go to the lower index.
    miss = np.nonzero(~has)[0]
    if miss.size:
        hop = _feature_hop(s, f)
        am, bm = a[miss], b[miss]  # (M,)
        arg_fmax = _argmax_accumulate(f)  # (N,)
        cands = np.stack(
            [
                arg_fmax[np.clip(lo[miss] - 1, 0, N - 1)],
                np.clip(lo[miss], 0, N - 1),
                np.clip(hi[miss], 0, N - 1),
            ],
            axis=1,
        )  # (M, 3)
        gaps = np.maximum(np.maximum(s[cands] - bm[:, None], am[:, None] - f[cands]), 0.0)  # (M, 3)
        best_gap = gaps.min(axis=1)  # (M,)
        tied = np.where(gaps <= best_gap[:, None], cands, N)  # (M, 3) lowest index among ties
        j = tied.min(axis=1)  # (M,)
        ok = best_gap <= hop + 1e-9
        pooled[miss[ok]] = feats[j[ok]]
        covered[miss[ok]] = True
    return pooled, covered


def _argmax_accumulate(x: np.ndarray) -> np.ndarray:
    """Index of the running maximum of x (first index on ties)."""
    idx = np.arange(x.shape[0])
    is_new = np.concatenate([[True], x[1:] > np.maximum.accumulate(x)[:-1]])
    return np.maximum.accumulate(np.where(is_new, idx, 0))


def pool_to_frames_reference(
    feats: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    frame_times: np.ndarray,
    frame_ends: np.ndarray | None = None,
    last_duration: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Plain double loop over frames and features; the oracle for `pool_to_frames`."""
    feats, s, f = _check(feats, starts, ends)
    a, b = frame_intervals(frame_times, frame_ends, last_duration)
    T, N, D = a.shape[0], feats.shape[0], feats.shape[1]
    pooled = np.zeros((T, D), np.float64)
    covered = np.zeros(T, bool)
    hop = _feature_hop(np.sort(s), f[np.argsort(s, kind="stable")]) if N else 0.0
    for i in range(T):
        total = 0.0
        acc = np.zeros(D, np.float64)
        for j in range(N):
            w = min(b[i], f[j]) - max(a[i], s[j])
            if w > 0:
                acc += w * feats[j]
                total += w
        if total > 0:
            pooled[i] = acc / total
            covered[i] = True
            continue
        best, best_gap = -1, np.inf
        for j in range(N):
            gap = max(s[j] - b[i], a[i] - f[j], 0.0)
            if gap < best_gap:
                best, best_gap = j, gap
        if best >= 0 and best_gap <= hop + 1e-9:
            pooled[i] = feats[best]
            covered[i] = True
    return pooled.astype(np.float32), covered
