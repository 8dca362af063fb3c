"""Tracks of a split: labels and masks joined from manifest and store, features per track.

The one place the trainer touches the store (`StoreReader`) and the labels
(`data_manifest.labels.load_labels`, whose rule handles annotation/video length mismatches).

- labels -1 are unknown: excluded from the loss and from metrics;
- a mask array (`face/valid`, `audio/valid`) is all ones only when the store has no such group;
  a complete group that lacks it is an error, never a mask of ones;
- `data.normalize = "track"` subtracts each track's mean feature (subject normalisation): a
  visual feature's mean over the frames with a face, the audio feature's over the frames with
  audio; the means are kept per track and subtracted per window.
"""

from __future__ import annotations

import logging
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

FEATURE_DTYPE = np.float16  # in-memory precision of float features (the store's own)
NORMALIZED_KEYS = ("cls", "patch", "audio", "local", "geometry", "regions")
MASK_KEYS = ("audio_valid", "face_valid", "mask")


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


@dataclass
class Track:
    """One track: labels (T, 12) int8 (-1 unknown), masks (T,), features by batch key (T, ...)
    when read (`arrays`; int8 tokens keep their per-token `scales` (T, h, w))."""

    track_id: str
    n_frames: int
    labels: np.ndarray
    face_valid: np.ndarray
    audio_valid: np.ndarray | None = None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    note: str = ""
    scales: dict[str, np.ndarray] = field(default_factory=dict)
    # per-key mean feature (...) subtracted from every frame when data.normalize = "track"
    means: dict[str, np.ndarray] = field(default_factory=dict)

    def without_arrays(self) -> Track:
        """The same track with its features dropped (labels, masks and means kept)."""
        return Track(
            self.track_id,
            self.n_frames,
            self.labels,
            self.face_valid,
            self.audio_valid,
            note=self.note,
            means=self.means,
        )


# ----------------------------------------------------------------------------- store checks


def required_keys(model: torch.nn.Module, features: dict[str, str]) -> list[str]:
    """Batch keys the model reads: `model.required_inputs` (all configured features if absent)."""
    need = getattr(model, "required_inputs", None)
    if need is None:
        return sorted(features)
    missing = sorted(set(need) - set(features) - set(MASK_KEYS))
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
            dims[f"{key}_size"] = int(np.prod(shape[1:], dtype=np.int64))  # one frame, flat
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


# ----------------------------------------------------------------------------- one track


def read_mask(reader, tid: str, path: str, have: set[str], n: int) -> np.ndarray:
    """A (T,) bool mask array of a track; all-ones only when the store has no such group.

    A store that has the group but a track that lost the array (or never finished the group)
    is an error naming track and array, never a mask of ones.
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


def normalizing_frames(track: Track, key: str) -> np.ndarray:
    """(T,) bool: the frames whose mean feature `key` subtracts: frames with audio for the audio
    key, frames with a face for the visual keys; every frame when the track has none (a mean
    over nothing is no mean)."""
    flags = track.audio_valid if key == "audio" and track.audio_valid is not None else None
    flags = track.face_valid if flags is None else flags
    n = min(len(flags), track.n_frames)
    use = np.zeros(track.n_frames, bool)
    use[:n] = flags[:n]
    return use if use.any() else np.ones(track.n_frames, bool)


def track_means(reader, track: Track, features: dict[str, str], keys: list[str]) -> None:
    """Subject normalisation: each visual feature's mean over the track's frames with a face,
    the audio feature's over its frames with audio (silence and gaps do not pull it)."""
    for key in keys:
        if key not in NORMALIZED_KEYS:
            continue
        values = reader.read(track.track_id, features[key])  # (T, ...) dequantised
        use = normalizing_frames(track, key)[: len(values)]
        track.means[key] = values[: len(use)][use].astype(np.float32).mean(0)


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
    if read_arrays:
        read_features(reader, track, features, keys)
    return track


def read_features(
    reader, track: Track, features: dict[str, str], keys: list[str], start: int = 0, stop=None
) -> Track:
    """Fill `track.arrays` (frames start..stop) losslessly and compactly: float16 features stay
    float16, int8 tokens stay int8 with their per-token scale (dequantised per batch), ROIs
    float32."""
    for key, (values, scale) in read_frames(reader, track.track_id, features, keys, start, stop):
        track.arrays[key] = values
        if scale is not None:
            track.scales[key] = scale
    return track


def read_frames(reader, tid: str, features: dict[str, str], keys: list[str], start=0, stop=None):
    """[(key, (values (n, ...), int8 scale (n, h, w) or None))] of frames start..stop."""
    out = []
    for key in keys:
        path = features[key]
        storage = reader.token_storage(tid, path)
        if storage is not None and storage.kind == "int8":
            values = reader.read(tid, path, start, stop, dequantize=False)
            scale = reader.read_scale(tid, path, start, stop).astype(np.float32)
            out.append((key, (values, scale)))
            continue
        values = reader.read(tid, path, start, stop)
        dtype = np.float32 if key == "rois" else FEATURE_DTYPE
        out.append((key, (values.astype(dtype, copy=False), None)))
    return out


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


# ----------------------------------------------------------------------------- label statistics


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
