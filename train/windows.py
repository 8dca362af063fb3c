"""Windows: where they start, which train, in what order, and how a batch of them is assembled.

Training windows are `window` frames every `stride` frames (the last one moved back to end at
the track's end), kept when they hold at least one trainable frame. The order of an epoch is
a pure function of (seed, epoch), so a resumed run repeats it.

Every loader builds its batches with one function, `assemble_window`, over a `FrameTable`:
segments of tracks (whole tracks for the caches, single windows for store reads) laid end to
end in one (N + 1, ...) tensor per key whose last row is the padding row (zeros; labels -1).
A window's frames beyond its segment point at that row, so padding is zero input with `mask`
False, on any device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from data_manifest.user_error import UserError
from train.config import DataConfig
from train.tracks import Track


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


def window_weights(
    tracks: list[Track], windows: np.ndarray, cfg: DataConfig, rates: np.ndarray
) -> np.ndarray:
    """Sampling weights favouring windows rich in rare AUs: 0.1 + mean over AUs of
    (window positive fraction / split positive rate `rates` (12,))."""
    rates = np.maximum(rates, 1e-3)
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


# ----------------------------------------------------------------------------- frame tables


@dataclass
class Segment:
    """Frames start..stop of one track."""

    track: Track
    start: int
    stop: int


# (segment) -> [(key, (values (n, ...), int8 scale (n, h, w) or None))]
FrameReader = Callable[[Segment], list]


def arrays_in_memory(segment: Segment, keys: list[str]) -> list:
    """Frames of a segment from `track.arrays` (and `track.scales`) already in memory."""
    t, sl = segment.track, slice(segment.start, segment.stop)
    return [(k, (t.arrays[k][sl], t.scales[k][sl] if k in t.scales else None)) for k in keys]


class FrameTable:
    """Segments of tracks end to end in one (N + 1, ...) tensor per key on `device`.

    Filled segment by segment into tensors allocated once, so the peak memory is the table
    plus one segment. Features keep the store's compact dtypes (float16, int8 + float32 scale).
    """

    def __init__(
        self,
        segments: list[Segment],
        keys: list[str],
        cfg: DataConfig,
        device: torch.device | str = "cpu",
        frames: FrameReader | None = None,
    ):
        self.keys = list(keys)
        self.device = torch.device(device)
        frames = frames or (lambda seg: arrays_in_memory(seg, keys))
        lengths = np.array([s.stop - s.start for s in segments], dtype=np.int64)
        offsets = np.r_[0, np.cumsum(lengths)[:-1]].astype(np.int64)
        total = int(lengths.sum())
        self.zero_row = total
        self.lengths = torch.as_tensor(lengths, device=self.device)  # (S,)
        self.offsets = torch.as_tensor(offsets, device=self.device)  # (S,)

        def alloc(shape, dtype, fill=0) -> torch.Tensor:
            out = torch.empty((total + 1, *shape), dtype=dtype, device=self.device)
            out[total] = fill
            return out

        self.data: dict[str, torch.Tensor] = {}
        self.scales: dict[str, torch.Tensor] = {}  # (N + 1, h, w) of int8 tokens
        self.labels = alloc((segments[0].track.labels.shape[1],), torch.int8, -1)  # (N + 1, 12)
        self.face_valid = alloc((), torch.bool, False)  # (N + 1,)
        self.train_ok = alloc((), torch.bool, False)  # (N + 1,)
        audio = segments[0].track.audio_valid is not None
        self.audio_valid = alloc((), torch.bool, False) if audio else None  # (N + 1,)
        masks: dict[int, np.ndarray] = {}
        for seg, off, n in zip(segments, offsets, lengths):
            t, sl, rows = seg.track, slice(seg.start, seg.stop), slice(int(off), int(off + n))
            for key, (values, scale) in frames(seg):
                if key not in self.data:
                    self.data[key] = alloc(values.shape[1:], torch.from_numpy(values[:0]).dtype)
                    if scale is not None:
                        self.scales[key] = alloc(scale.shape[1:], torch.float32)
                self.data[key][rows] = torch.from_numpy(np.ascontiguousarray(values))
                if scale is not None:
                    self.scales[key][rows] = torch.from_numpy(np.ascontiguousarray(scale))
            if id(t) not in masks:
                masks[id(t)] = train_mask(t, cfg)
            self.labels[rows] = torch.from_numpy(t.labels[sl])
            self.face_valid[rows] = torch.from_numpy(t.face_valid[sl])
            self.train_ok[rows] = torch.from_numpy(masks[id(t)][sl])
            if self.audio_valid is not None:
                self.audio_valid[rows] = torch.from_numpy(t.audio_valid[sl])
        means = segments[0].track.means
        self.means = {
            k: torch.from_numpy(np.stack([s.track.means[k] for s in segments])).to(self.device)
            for k in keys
            if k in means
        }  # (S, ...) per-segment mean features (data.normalize = "track")

    @property
    def nbytes(self) -> int:
        tensors = [*self.data.values(), *self.scales.values(), self.labels]
        return sum(t.numel() * t.element_size() for t in tensors)


SCALE, MEAN = "scale:", "mean:"  # prefixes of the compact batch's int8 scales and track means


def gather_window(table: FrameTable, segment_idx, starts, window: int) -> dict[str, torch.Tensor]:
    """The compact batch: windows (B, T, ...) in the table's dtypes (float16, int8 with their
    scales under "scale:<key>"), track means (B, ...) under "mean:<key>", labels int8, masks.
    Small to copy to the device; `finish_window` turns it into the model's batch there."""
    dev = table.device
    si = torch.as_tensor(segment_idx, device=dev)
    st = torch.as_tensor(starts, device=dev)
    pos = st[:, None] + torch.arange(window, device=dev)  # (B, T)
    inside = pos < table.lengths[si][:, None]  # (B, T)
    idx = torch.where(inside, table.offsets[si][:, None] + pos, table.zero_row)  # (B, T)
    raw = {k: v[idx] for k, v in table.data.items()}  # (B, T, ...) stored dtypes
    raw.update({SCALE + k: v[idx] for k, v in table.scales.items()})  # (B, T, h, w)
    raw.update({MEAN + k: v[si] for k, v in table.means.items()})  # (B, ...)
    raw["mask"] = inside
    raw["face_valid"] = table.face_valid[idx] & inside
    raw["train_mask"] = table.train_ok[idx] & inside
    raw["labels"] = table.labels[idx]  # (B, T, 12) int8, -1 unknown
    if table.audio_valid is not None:
        raw["audio_valid"] = table.audio_valid[idx] & inside
    return raw


def finish_window(raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model's batch from a compact one, on its device: float32 features, int8 tokens
    dequantised, track means subtracted, labels float (-1 unknown)."""
    batch = {}
    for k, v in raw.items():
        if k.startswith((SCALE, MEAN)):
            continue
        if k in ("mask", "face_valid", "train_mask", "audio_valid"):
            batch[k] = v
            continue
        x = v.float()  # (B, T, ...)
        if SCALE + k in raw:
            x = x * raw[SCALE + k].float()[..., None]  # int8 tokens (B, T, h, w, D)
        if MEAN + k in raw:
            x = x - raw[MEAN + k][:, None]  # (B, T, ...) minus the track's mean
        batch[k] = x
    return batch


def assemble_window(table: FrameTable, segment_idx, starts, window: int) -> dict[str, torch.Tensor]:
    """Batch of windows (B, T, ...) of `window` frames from `starts` (B,) into `segment_idx`
    (B,) of `table`, on the table's device; int8 tokens dequantised, track means subtracted.

    The one place a batch is made: every loader and whole-track prediction come through here
    (host loaders copy the compact `gather_window` and call `finish_window` on the device)."""
    return finish_window(gather_window(table, segment_idx, starts, window))


def whole_tracks(tracks: list[Track]) -> list[Segment]:
    return [Segment(t, 0, t.n_frames) for t in tracks]


def window_segments(tracks: list[Track], windows: np.ndarray, window: int) -> list[Segment]:
    """One segment per (track index, start) row of `windows` (W, 2), cut at the track's end."""
    out = []
    for i, s in windows:
        t = tracks[int(i)]
        out.append(Segment(t, int(s), min(int(s) + window, t.n_frames)))
    return out
