"""Training and evaluation data over a feature store joined with manifest labels.

The one place the trainer touches the store (`StoreReader`) and the labels
(`data_manifest.labels.load_labels`, whose rule handles annotation/video length mismatches).

Frames and masks:
- labels -1 are unknown: excluded from the loss (the loss ignores them) and from metrics;
- frames without a face (`face/valid` False) are masked out of training when
  `data.faceless_train == "mask"`; at prediction time their probabilities are copied from the
  nearest frame with a face (the earlier one when two are equally near), so every frame of a
  track gets a prediction. A track without any face keeps the model's own output.
- window padding beyond the end of a track is zero input with `mask` False.

Windows: training windows of `window` frames every `stride` frames (the last window is
moved back to end at the track's end); evaluation covers whole tracks with windows of
`eval_window` every `eval_stride` frames whose logits are averaged where they overlap.

Two loaders give the same batches: `TensorWindows` gathers windows from the whole split held
in memory (RAM or GPU, float16), `StoreWindows` reads each window from the store in
DataLoader worker processes when the split does not fit.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from data_manifest.aus import AUS, N_AUS
from data_manifest.manifest import usable_rows
from data_manifest.user_error import UserError
from train.config import DataConfig, ImbalanceConfig

log = logging.getLogger(__name__)

FEATURE_DTYPE = np.float16  # in-memory cache precision of features


def open_store(url: str):
    """A StoreReader for `url` (local path or fsspec URL)."""
    from extract.store import StoreReader

    return StoreReader(str(url))


def read_manifest(path: str) -> pd.DataFrame:
    from data_manifest.manifest import read_manifest as _read

    return _read(path)


def group_of(array_path: str) -> str | None:
    from extract.store.schema import group_of as _group_of

    return _group_of(array_path)


# ----------------------------------------------------------------------------- tracks


@dataclass
class Track:
    """One track: features by batch key (T, ...), masks (T,), labels (T, 12) int8 (-1 unknown)."""

    track_id: str
    n_frames: int
    labels: np.ndarray
    face_valid: np.ndarray
    audio_valid: np.ndarray | None = None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    note: str = ""
    # per-token scales (T, h, w) of int8 token arrays kept quantised in memory
    scales: dict[str, np.ndarray] = field(default_factory=dict)
    # per-key mean feature (...) subtracted from every frame when data.normalize = "track"
    means: dict[str, np.ndarray] = field(default_factory=dict)


NORMALIZED_KEYS = ("cls", "patch", "audio", "local")


def track_means(reader, track: Track, features: dict[str, str], keys: list[str]) -> None:
    """Subject normalisation: each feature's mean over the track's frames with a face."""
    use = track.face_valid if track.face_valid.any() else np.ones(track.n_frames, bool)
    for key in keys:
        if key not in NORMALIZED_KEYS:
            continue
        values = reader.read(track.track_id, features[key])  # (T, ...) dequantised
        track.means[key] = values[use].astype(np.float32).mean(0)


def required_keys(model: torch.nn.Module, features: dict[str, str]) -> list[str]:
    """Batch keys the model reads: `model.required_inputs` (all configured features if absent)."""
    need = getattr(model, "required_inputs", None)
    if need is None:
        return sorted(features)
    missing = sorted(set(need) - set(features) - {"audio_valid", "face_valid", "mask"})
    if missing:
        raise UserError(
            f"model needs batch key(s) {missing} but data.features maps only {sorted(features)}; "
            f"add e.g. --set data.features.{missing[0]}=<store array path>"
        )
    return sorted(k for k in need if k in features)


def feature_dims(reader, track_id: str, features: dict[str, str]) -> dict[str, Any]:
    """Sizes the model is built with, from the array shapes of one track (no data read)."""
    have = set(reader.arrays(track_id))
    dims: dict[str, Any] = {"n_aus": N_AUS}
    for key, path in features.items():
        if path not in have:
            continue
        shape = tuple(reader.shape(track_id, path))
        if key == "patch":
            dims["patch"] = shape[-1]
            dims["grid"] = tuple(shape[1:3])
        elif key == "rois":
            dims["n_rois"] = shape[1]
        else:
            dims[key] = shape[-1] if len(shape) > 1 else 1
    return dims


def split_rows(manifest: pd.DataFrame, split: str, max_tracks: int = 0) -> pd.DataFrame:
    rows = usable_rows(manifest[manifest["split"] == split], what=split)
    if max_tracks:
        rows = rows.iloc[:max_tracks]
    return rows.reset_index(drop=True)


def check_tracks(reader, rows: pd.DataFrame, what: str) -> pd.DataFrame:
    """Keep rows whose track is complete in the store; name the missing ones."""
    have = set(reader.tracks())
    missing = [t for t in rows["track_id"] if t not in have]
    if missing:
        log.warning(
            "%s: %d track(s) not in the store, skipped: %s", what, len(missing), missing[:5]
        )
    return rows[rows["track_id"].isin(have)].reset_index(drop=True)


def check_groups(reader, paths: list[str], tracks: list[str] | None = None) -> list[str]:
    """Refuse to read arrays whose group fingerprints differ between `tracks` and the store."""
    from extract.store import FingerprintMismatch, GroupMissing

    groups = sorted({g for g in (group_of(p) for p in paths) if g})
    try:
        reader.require_groups(paths, tracks)
    except (FingerprintMismatch, GroupMissing) as exc:
        raise UserError(str(exc)) from exc
    return groups


def group_fingerprints(reader, groups: list[str]) -> dict[str, str]:
    root = reader.groups
    return {g: str(root.get(g, {}).get("fingerprint", "")) for g in groups}


def read_mask(reader, tid: str, path: str, have: set[str], n: int) -> np.ndarray:
    """A (T,) bool mask array of a track; all-ones only when the store has no such group.

    A store that has the group but a track that lost the array (or never finished the group)
    is an error naming track, array and file, never a mask of ones.
    """
    from extract.store import CorruptChunk, MissingChunk

    if path in have:
        try:
            return reader.read(tid, path).astype(bool)
        except (MissingChunk, CorruptChunk) as exc:
            raise UserError(str(exc)) from exc
    grp = group_of(path)
    if grp in reader.groups:
        raise UserError(
            f"track {tid!r}: the store has group {grp!r} but this track has no complete "
            f"{path!r}; run auwild-extract run again to extract it"
        )
    return np.ones(n, bool)


def load_track(
    reader,
    row: pd.Series,
    features: dict[str, str],
    keys: list[str],
    cfg: DataConfig,
    read_arrays: bool = True,
) -> Track:
    """One track's labels and masks (and its feature arrays when `read_arrays`)."""
    from data_manifest.labels import load_labels

    tid = str(row["track_id"])
    n = int(reader.n_frames(tid))
    labels_path = row.get("labels", "") if hasattr(row, "get") else ""
    labels_path = labels_path if isinstance(labels_path, str) else ""
    result = load_labels(labels_path, n)
    if result.note:
        log.debug("%s", result.note)
    have = set(reader.arrays(tid))  # with the arrays a complete group must hold, even if lost
    face_valid = read_mask(reader, tid, cfg.face_valid, have, n)
    audio_valid = read_mask(reader, tid, cfg.audio_valid, have, n) if "audio" in keys else None
    for key in keys:
        path = features[key]
        if path not in have:
            raise UserError(f"track {tid!r}: store has no array {path!r} (batch key {key!r})")
    track = Track(tid, n, result.labels, face_valid, audio_valid, note=result.note)
    if cfg.normalize == "track":
        track_means(reader, track, features, keys)
    elif cfg.normalize != "none":
        raise UserError(f"data.normalize must be 'none' or 'track', got {cfg.normalize!r}")
    if read_arrays:
        read_features(reader, track, features, keys)
    return track


def read_features(reader, track: Track, features: dict[str, str], keys: list[str]) -> Track:
    """Fill `track.arrays` losslessly and compactly: float16 features stay float16, int8
    tokens stay int8 with their per-token scale (dequantised per batch), ROIs float32."""
    for key in keys:
        path = features[key]
        storage = reader.token_storage(track.track_id, path)
        if storage is not None and storage.kind == "int8":
            track.arrays[key] = reader.read(track.track_id, path, dequantize=False)
            track.scales[key] = reader.read_scale(track.track_id, path).astype(np.float32)
            continue
        values = reader.read(track.track_id, path)
        track.arrays[key] = values.astype(
            np.float32 if key == "rois" else FEATURE_DTYPE, copy=False
        )
    return track


def report_label_notes(tracks: list[Track], what: str) -> None:
    """One log line for annotation/video length mismatches (the labels rule was applied)."""
    notes = [t.note for t in tracks if t.note]
    if notes:
        log.info(
            "%s: %d of %d track(s) have annotations of another length than the video "
            "(aligned from frame 1, extra lines dropped, missing frames -1), e.g. %s",
            what,
            len(notes),
            len(tracks),
            notes[0],
        )


def positive_rates(tracks: list[Track]) -> np.ndarray:
    """Fraction of labelled frames positive, per AU (12,)."""
    pos = np.zeros(N_AUS)
    known = np.zeros(N_AUS)
    for t in tracks:
        pos += (t.labels == 1).sum(0)
        known += (t.labels >= 0).sum(0)
    return pos / np.maximum(known, 1)


def format_rates(rates: np.ndarray) -> str:
    return " ".join(f"{a}={r:.3f}" for a, r in zip(AUS, rates))


def pos_weights(tracks: list[Track], cfg: ImbalanceConfig) -> list[float] | None:
    """BCE positive weights: negatives / positives per AU, clipped to [1, max_pos_weight]."""
    if cfg.pos_weight in (None, "none", False):
        return None
    if isinstance(cfg.pos_weight, (list, tuple)):
        if len(cfg.pos_weight) != N_AUS:
            raise UserError(f"imbalance.pos_weight needs {N_AUS} numbers, got {cfg.pos_weight}")
        return [float(x) for x in cfg.pos_weight]
    if cfg.pos_weight != "auto":
        raise UserError(f"imbalance.pos_weight must be auto, none or 12 numbers: {cfg.pos_weight}")
    rates = positive_rates(tracks)
    w = (1 - rates) / np.maximum(rates, 1e-6)
    return [float(x) for x in np.clip(w, 1.0, cfg.max_pos_weight)]


# ----------------------------------------------------------------------------- windows


def window_starts(n: int, window: int, stride: int) -> np.ndarray:
    """Starts of windows covering [0, n): every `stride`, the last one ending at n."""
    if n <= window:
        return np.zeros(1, np.int64)
    starts = np.arange(0, n - window + 1, stride, dtype=np.int64)
    if starts[-1] + window < n:
        starts = np.r_[starts, n - window]
    return starts


def train_mask(track: Track, cfg: DataConfig) -> np.ndarray:
    """(T,) frames that may enter the loss (labels -1 are dropped by the loss itself)."""
    keep = (track.labels >= 0).any(1)
    if cfg.faceless_train == "mask":
        keep &= track.face_valid
    elif cfg.faceless_train != "keep":
        raise UserError(f"data.faceless_train must be mask or keep, got {cfg.faceless_train!r}")
    return keep


def training_windows(tracks: list[Track], cfg: DataConfig) -> np.ndarray:
    """(W, 2) int64 (track index, start) of windows holding at least one trainable frame."""
    out = []
    for i, t in enumerate(tracks):
        keep = train_mask(t, cfg)
        csum = np.r_[0, np.cumsum(keep)]
        for s in window_starts(t.n_frames, cfg.window, cfg.stride):
            if csum[min(s + cfg.window, t.n_frames)] - csum[s] > 0:
                out.append((i, int(s)))
    if not out:
        raise UserError("no training window has a labelled frame with a face")
    return np.asarray(out, dtype=np.int64)


def window_weights(tracks: list[Track], windows: np.ndarray, cfg: DataConfig) -> np.ndarray:
    """Sampling weights favouring windows rich in rare AUs: 0.1 + mean over AUs of
    (window positive fraction / split positive rate)."""
    rates = np.maximum(positive_rates(tracks), 1e-3)
    w = np.empty(len(windows))
    for j, (i, s) in enumerate(windows):
        lab = tracks[i].labels[s : s + cfg.window]
        known = np.maximum((lab >= 0).sum(0), 1)
        w[j] = 0.1 + float(((lab == 1).sum(0) / known / rates).mean())
    return w / w.sum()


def epoch_order(
    n: int, epoch: int, seed: int, weights: np.ndarray | None = None, rank: int = 0, world: int = 1
) -> np.ndarray:
    """Window order of one epoch, a pure function of (seed, epoch) so resumed runs repeat it;
    under DDP each rank takes an equal-length strided share."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    if weights is None:
        order = torch.randperm(n, generator=g).numpy()
    else:
        order = torch.multinomial(
            torch.as_tensor(weights, dtype=torch.float64), n, replacement=True, generator=g
        ).numpy()
    per_rank = n // world if world > 1 else n
    return order[rank::world][:per_rank]


class TensorWindows:
    """Windows gathered from tracks concatenated in memory (CPU or GPU), one gather per key.

    Tracks sit end to end in one (N + 1, ...) tensor per key whose last row is zeros
    (labels: -1);
    a window's frame indices beyond its track point at that row, so padding is zero input.
    """

    def __init__(
        self,
        tracks: list[Track],
        keys: list[str],
        cfg: DataConfig,
        device: torch.device | str = "cpu",
    ):
        self.tracks = tracks
        self.keys = keys
        self.cfg = cfg
        self.device = torch.device(device)
        lengths = np.array([t.n_frames for t in tracks], dtype=np.int64)
        self.offsets = torch.as_tensor(np.r_[0, np.cumsum(lengths)[:-1]], device=self.device)
        self.lengths = torch.as_tensor(lengths, device=self.device)
        self.zero_row = int(lengths.sum())

        def cat(parts: list[np.ndarray], fill=0) -> torch.Tensor:
            pad = np.full((1,) + parts[0].shape[1:], fill, parts[0].dtype)
            return torch.from_numpy(np.concatenate(parts + [pad])).to(self.device)

        self.data = {k: cat([t.arrays[k] for t in tracks]) for k in keys}
        self.scales = {
            k: cat([t.scales[k] for t in tracks]) for k in keys if tracks and k in tracks[0].scales
        }  # (N + 1, h, w) per-token scales of int8 tokens
        self.means = {
            k: torch.from_numpy(np.stack([t.means[k] for t in tracks])).to(self.device)
            for k in keys
            if tracks and k in tracks[0].means
        }  # (n_tracks, ...) per-track mean features (data.normalize = "track")
        self.labels = cat([t.labels for t in tracks], -1)  # (N + 1, 12) int8
        self.face_valid = cat([t.face_valid for t in tracks])  # (N + 1,)
        self.train_ok = cat([train_mask(t, cfg) for t in tracks])  # (N + 1,)
        self.audio_valid = (
            cat([t.audio_valid for t in tracks]) if "audio" in keys else None
        )  # (N + 1,)

    def gather(self, track_idx, starts, window: int) -> dict[str, torch.Tensor]:
        """Batch of windows (B, T, ...) for `track_idx` (B,), `starts` (B,)."""
        ti = torch.as_tensor(track_idx, device=self.device)
        st = torch.as_tensor(starts, device=self.device)
        pos = st[:, None] + torch.arange(window, device=self.device)  # (B, T)
        inside = pos < self.lengths[ti][:, None]  # (B, T)
        idx = torch.where(inside, self.offsets[ti][:, None] + pos, self.zero_row)  # (B, T)
        batch = {k: v[idx].float() for k, v in self.data.items()}  # (B, T, ...)
        for k, scale in self.scales.items():
            batch[k] = batch[k] * scale[idx].float()[..., None]  # int8 tokens (B, T, h, w, D)
        for k, mean in self.means.items():
            batch[k] = batch[k] - mean[ti][:, None]  # (B, T, ...) minus the track's mean
        batch["mask"] = inside
        batch["face_valid"] = self.face_valid[idx] & inside
        batch["train_mask"] = self.train_ok[idx] & inside
        batch["labels"] = self.labels[idx].float()  # (B, T, 12), -1 unknown
        if self.audio_valid is not None:
            batch["audio_valid"] = self.audio_valid[idx] & inside
        return batch


def _window_item(track: Track, arrays: dict[str, np.ndarray], start: int, window: int, cfg):
    """Pad one window of a track (arrays already sliced from `start`) to `window` frames."""
    n = min(window, track.n_frames - start)
    sl = slice(start, start + n)

    def pad(x: np.ndarray, fill=0) -> np.ndarray:
        out = np.full((window,) + x.shape[1:], fill, dtype=x.dtype)
        out[:n] = x[:n]
        return out

    inside = np.zeros(window, bool)
    inside[:n] = True
    arrays = {
        k: v.astype(np.float32) - track.means[k] if k in track.means else v
        for k, v in arrays.items()
    }
    item = {k: torch.from_numpy(pad(v).astype(np.float32)) for k, v in arrays.items()}
    item["mask"] = torch.from_numpy(inside)
    item["face_valid"] = torch.from_numpy(pad(track.face_valid[sl]))
    item["train_mask"] = torch.from_numpy(pad(train_mask(track, cfg)[sl]))
    item["labels"] = torch.from_numpy(pad(track.labels[sl], -1).astype(np.float32))
    if track.audio_valid is not None:
        item["audio_valid"] = torch.from_numpy(pad(track.audio_valid[sl]))
    return item


class StoreWindows(torch.utils.data.Dataset):
    """Windows read from the store on demand (one reader per worker process)."""

    def __init__(
        self,
        store_url: str,
        tracks: list[Track],
        windows: np.ndarray,
        features: dict[str, str],
        keys: list[str],
        cfg: DataConfig,
    ):
        self.store_url = str(store_url)
        self.tracks = tracks
        self.windows = windows
        self.features = features
        self.keys = keys
        self.cfg = cfg
        self._reader = None
        self._pid = -1

    def reader(self):
        if self._reader is None or self._pid != os.getpid():
            self._reader = open_store(self.store_url)
            self._pid = os.getpid()
        return self._reader

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, j: int) -> dict[str, torch.Tensor]:
        i, start = (int(x) for x in self.windows[j])
        t = self.tracks[i]
        stop = min(start + self.cfg.window, t.n_frames)
        r = self.reader()
        arrays = {k: r.read(t.track_id, self.features[k], start, stop) for k in self.keys}
        return _window_item(t, arrays, start, self.cfg.window, self.cfg)

    def __getstate__(self) -> dict:
        """Workers get a copy without the reader; each opens its own (see reader())."""
        state = dict(self.__dict__)
        state["_reader"] = None
        state["_pid"] = -1
        return state


# ----------------------------------------------------------------------------- predictions


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


@torch.no_grad()
def predict_track_logits(
    model: torch.nn.Module,
    windows: TensorWindows,
    track_index: int,
    cfg: DataConfig,
    batch_size: int,
    autocast_dtype: torch.dtype | None = None,
) -> np.ndarray:
    """Whole-track logits (T, A): overlapping evaluation windows, averaged where they overlap."""
    t = windows.tracks[track_index]
    starts = window_starts(t.n_frames, cfg.eval_window, cfg.eval_stride)
    total = torch.zeros(t.n_frames, N_AUS, dtype=torch.float64)
    count = torch.zeros(t.n_frames, 1, dtype=torch.float64)
    for b in range(0, len(starts), batch_size):
        st = starts[b : b + batch_size]
        batch = windows.gather(np.full(len(st), track_index), st, cfg.eval_window)
        batch = {k: v.to(_model_device(model), non_blocking=True) for k, v in batch.items()}
        with torch.autocast(
            device_type=_model_device(model).type,
            dtype=autocast_dtype or torch.bfloat16,
            enabled=autocast_dtype is not None,
        ):
            logits = model(batch)  # (B, T, A)
        logits = logits.float().cpu().double()
        for row, s in enumerate(st):
            n = min(cfg.eval_window, t.n_frames - int(s))
            total[s : s + n] += logits[row, :n]
            count[s : s + n] += 1
    return (total / count.clamp(min=1)).numpy()


def _model_device(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


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
) -> dict[str, np.ndarray]:
    """track_id -> probabilities (T, A) after the faceless rule. Tracks whose arrays are not in
    memory are read one at a time from `reader`."""
    model.eval()
    out: dict[str, np.ndarray] = {}
    for t in tracks:
        if not all(k in t.arrays for k in keys):
            t = Track(t.track_id, t.n_frames, t.labels, t.face_valid, t.audio_valid, means=t.means)
            read_features(reader, t, features, keys)
        tw = TensorWindows([t], keys, cfg, device=device)
        logits = predict_track_logits(model, tw, 0, cfg, batch_size, autocast_dtype)
        probs = 1.0 / (1.0 + np.exp(-logits))  # (T, A)
        if cfg.faceless_predict == "nearest":
            probs = fill_faceless(probs, t.face_valid)
        elif cfg.faceless_predict != "model":
            raise UserError(
                f"data.faceless_predict must be nearest or model, got {cfg.faceless_predict!r}"
            )
        out[t.track_id] = probs.astype(np.float32)
    return out


def stack_labels(tracks: list[Track], probs: dict[str, np.ndarray]):
    """Concatenate (probs (N, A), labels (N, A)) over tracks for scoring."""
    p = np.concatenate([probs[t.track_id] for t in tracks])
    y = np.concatenate([t.labels for t in tracks])
    return p, y
