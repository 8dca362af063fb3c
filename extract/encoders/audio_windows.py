"""Overlapping analysis windows over a long track, stitched back from their centres.

Why: transformer encoders cost memory in the window length (and Whisper accepts exactly
30 s), so a 15-minute track is cut into windows of fixed length that overlap. Each
output frame is taken from the window in which it sits farthest from an edge: the seam
between window k and k+1 is the middle of their overlap. Window starts are multiples of
the encoder's frame stride, so frame k of a window is exactly frame `start/stride + k`
of the whole track, and the stitched frame grid equals a single pass over the track.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_FAR = 2**62  # "no seam on this side"


@dataclass(frozen=True)
class Window:
    start: int  # first sample of the window in the track
    stop: int  # one past the last sample (<= track length)
    keep_lo: int  # keep frames whose centre sample is >= keep_lo ...
    keep_hi: int  # ... and < keep_hi (track coordinates)

    @property
    def length(self) -> int:
        return self.stop - self.start


def plan_windows(n_samples: int, window: int, overlap: int, stride: int = 1) -> list[Window]:
    """Windows of `window` samples overlapping by `overlap`, starts on a `stride` grid.

    window/overlap are rounded down to multiples of `stride`; the last window ends at the
    track's end and is longer than the overlap, so every window holds real audio.
    """
    window = (window // stride) * stride
    overlap = (overlap // stride) * stride
    if window <= 0 or not 0 <= overlap < window:
        raise ValueError(f"need 0 <= overlap ({overlap}) < window ({window}) samples")
    if n_samples <= window:
        return [Window(0, n_samples, -_FAR, _FAR)]
    hop = window - overlap
    n_win = max(1, math.ceil((n_samples - overlap) / hop))
    out = []
    for k in range(n_win):
        start = k * hop
        stop = min(start + window, n_samples)
        lo = -_FAR if k == 0 else start + overlap // 2
        hi = _FAR if k == n_win - 1 else (k + 1) * hop + overlap // 2
        out.append(Window(start, stop, lo, hi))
    return out


def group_windows(windows: list[Window], batch_size: int) -> list[list[Window]]:
    """Consecutive windows of equal length in groups of at most `batch_size` (one forward each)."""
    groups: list[list[Window]] = []
    for w in windows:
        if groups and len(groups[-1]) < batch_size and groups[-1][0].length == w.length:
            groups[-1].append(w)
        else:
            groups.append([w])
    return groups


def run_in_windows(
    windows: list[Window],
    batch_size: int,
    run,
    centre_of,
    stride: int,
    n_frames: int,
    dim: int,
):
    """Run `run(list[Window]) -> list[(n_w, D) array]` per group and stitch by frame centre.

    `centre_of(local_index (n,)) -> (n,)` gives a frame's centre sample within its window;
    frame k of a window is frame `start // stride + k` of the track. Returns the stitched
    (n_frames, dim) float32 array, written in place (no list of pieces to concatenate).
    Raises RuntimeError if the windows do not produce exactly one value per frame.
    """
    out = np.empty((n_frames, dim), np.float32)
    filled = 0
    for group in group_windows(windows, batch_size):
        outs = run(group)
        for w, o in zip(group, outs):
            local = np.arange(o.shape[0])
            c = w.start + centre_of(local)  # (n_w,) track samples
            keep = (c >= w.keep_lo) & (c < w.keep_hi)
            g = w.start // stride + local[keep]  # (k,) track frame indices
            if g.size and g[-1] >= n_frames:
                raise RuntimeError(f"window at sample {w.start} yields frame {g[-1]} >= {n_frames}")
            out[g] = o[keep]
            filled += int(g.size)
    if filled != n_frames:
        raise RuntimeError(f"windows produced {filled} frames, expected {n_frames}")
    return out
