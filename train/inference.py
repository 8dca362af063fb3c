"""Whole-track prediction: every frame of a track gets probabilities for every AU.

A track is covered by evaluation windows of `data.eval_window` frames every `data.eval_stride`
frames whose logits are averaged where they overlap; `data.eval_window = 0` runs each track in
one pass (sequence models linear in length, such as the AG-SSM, see the whole context), and a
track that does not fit in device memory in one pass falls back to windows of the training
length (`data.window`, half overlapping), with one log line naming it.
Frames without a face then take the probabilities of the nearest frame with a face (the
earlier one on ties) when `data.faceless_predict = "nearest"`; a track without any face keeps
the model's own output.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from data_manifest.aus import N_AUS
from train.config import DataConfig
from train.tracks import Track
from train.windows import FrameTable, assemble_window, whole_tracks, window_starts

log = logging.getLogger(__name__)


def fill_faceless(values: np.ndarray, face_valid: np.ndarray) -> np.ndarray:
    """Copy each faceless frame's row from the nearest frame with a face (earlier on ties).

    values (T, A), face_valid (T,). A track with no face at all is returned unchanged."""
    valid = np.flatnonzero(face_valid)
    if len(valid) == 0 or len(valid) == len(face_valid):
        return values
    t = np.arange(len(face_valid))
    pos = np.searchsorted(valid, t)
    left = valid[np.clip(pos - 1, 0, len(valid) - 1)]
    right = valid[np.clip(pos, 0, len(valid) - 1)]
    has_left = pos > 0
    has_right = pos < len(valid)
    use_left = has_left & (~has_right | ((t - left) <= (right - t)))
    src = np.where(face_valid, t, np.where(use_left, left, right))
    return values[src]


def eval_windows(n: int, cfg: DataConfig, whole: bool = True) -> tuple[int, np.ndarray, int]:
    """(window, starts, stride) covering a track of n frames: one window of n when eval_window is
    0 and `whole`, else eval windows (training-length windows when eval_window is 0)."""
    if cfg.eval_window <= 0:
        if whole:
            return n, np.zeros(1, np.int64), n
        return cfg.window, window_starts(n, cfg.window, max(1, cfg.window // 2)), cfg.window // 2
    return cfg.eval_window, window_starts(n, cfg.eval_window, cfg.eval_stride), cfg.eval_stride


def model_device(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


@torch.no_grad()
def predict_track_logits(
    model: torch.nn.Module,
    table: FrameTable,
    index: int,
    n_frames: int,
    cfg: DataConfig,
    batch_size: int,
    autocast_dtype: torch.dtype | None = None,
) -> np.ndarray:
    """Logits (T, A) of segment `index` of `table` (a whole track of `n_frames`): overlapping
    evaluation windows, averaged where they overlap (or one pass, see the module docstring)."""
    if cfg.eval_window <= 0:
        try:
            return _logits(model, table, index, n_frames, cfg, batch_size, autocast_dtype, True)
        except torch.OutOfMemoryError:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            log.warning(
                "track of %d frames (segment %d) does not fit in one pass; predicted in windows "
                "of %d frames",
                n_frames,
                index,
                cfg.window,
            )
    return _logits(model, table, index, n_frames, cfg, batch_size, autocast_dtype, False)


def _logits(model, table, index, n_frames, cfg, batch_size, autocast_dtype, whole) -> np.ndarray:
    window, starts, _ = eval_windows(n_frames, cfg, whole)
    device = model_device(model)
    total = torch.zeros(n_frames, N_AUS, dtype=torch.float64)
    count = torch.zeros(n_frames, 1, dtype=torch.float64)
    for b in range(0, len(starts), batch_size):
        st = starts[b : b + batch_size]
        batch = assemble_window(table, np.full(len(st), index), st, window)
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with torch.autocast(
            device_type=device.type,
            dtype=autocast_dtype or torch.bfloat16,
            enabled=autocast_dtype is not None,
        ):
            logits = model(batch)  # (B, T, A)
        logits = logits.float().cpu().double()
        for row, s in enumerate(st):
            n = min(window, n_frames - int(s))
            total[s : s + n] += logits[row, :n]
            count[s : s + n] += 1
    return (total / count.clamp(min=1)).numpy()


def predict_probs(
    model: torch.nn.Module,
    tracks: list[Track],
    keys: list[str],
    cfg: DataConfig,
    batch_size: int,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
    reader=None,
    features: dict[str, str] | None = None,
    table: FrameTable | None = None,
) -> dict[str, np.ndarray]:
    """track_id -> probabilities (T, A) after the faceless rule.

    `table` holds all `tracks` in order (a cache); without one each track is taken from its
    own arrays when in memory, else read from `reader` one track at a time."""
    from train.loaders import store_frames

    model.eval()
    out: dict[str, np.ndarray] = {}
    for i, t in enumerate(tracks):
        if table is not None:
            source, index = table, i
        else:
            frames = (
                None if all(k in t.arrays for k in keys) else store_frames(reader, features, keys)
            )
            source, index = FrameTable(whole_tracks([t]), keys, cfg, device, frames), 0
        logits = predict_track_logits(
            model, source, index, t.n_frames, cfg, batch_size, autocast_dtype
        )
        probs = 1.0 / (1.0 + np.exp(-logits))  # (T, A)
        if cfg.faceless_predict == "nearest":
            probs = fill_faceless(probs, t.face_valid)
        out[t.track_id] = probs.astype(np.float32)
    return out


def stack_labels(tracks: list[Track], probs: dict[str, np.ndarray]):
    """Concatenate (probs (N, A), labels (N, A)) over tracks for scoring."""
    p = np.concatenate([probs[t.track_id] for t in tracks])
    y = np.concatenate([t.labels for t in tracks])
    return p, y
