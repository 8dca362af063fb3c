"""Everything a training run reads, in one call: `open_split` then `build_data`.

`open_split` joins manifest and store (which tracks, the model's input sizes) without reading
features; the model is built from its dims; `build_data` then loads the tracks the model needs,
the label statistics, the training windows and their sampling weights, picks the cache
(`loaders.choose_cache`) and returns a `TrainData` with a ready loader.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from data_manifest.user_error import UserError
from train import tracks as T
from train.config import TrainConfig
from train.distributed import DistInfo
from train.loaders import StoreBatches, WindowLoader, build_cache, cache_bytes, choose_cache
from train.windows import FrameTable, training_windows, window_weights

log = logging.getLogger(__name__)


@dataclass
class StoreSplit:
    """Train and validation rows of the manifest that are complete in the store."""

    store: str
    reader: Any
    train_rows: pd.DataFrame
    val_rows: pd.DataFrame
    dims: dict[str, Any]  # the model's input sizes, from array shapes (nothing read)


@dataclass
class TrainData:
    """What the loop needs: tracks, windows, statistics, a loader and the validation source."""

    split: StoreSplit
    keys: list[str]  # batch keys the model reads
    train_tracks: list[T.Track]
    val_tracks: list[T.Track]  # empty on DDP ranks other than 0
    windows: np.ndarray  # (W, 2) track index, start
    weights: np.ndarray | None  # (W,) sampling weights (imbalance.sampler) or None
    rates: np.ndarray  # (12,) positive rate per AU of the training frames
    pos_weight: list[float] | None  # BCE positive weights (imbalance.pos_weight)
    loader: WindowLoader
    val_table: FrameTable | None  # validation tracks cached alongside training, or None
    fingerprints: dict[str, str]  # group -> fingerprint of every array read
    cache: str  # "gpu", "ram" or "stream"
    batch_size: int
    steps_per_epoch: int

    @property
    def reader(self):
        return self.split.reader


def open_split(
    config: TrainConfig,
    store: str,
    manifest: str | pd.DataFrame,
    train_rows: pd.DataFrame | None = None,
    val_rows: pd.DataFrame | None = None,
) -> StoreSplit:
    """The run's tracks (manifest splits, or the given rows for folds) present in the store."""
    cfg = config.data
    reader = T.open_store(store)
    man = manifest if isinstance(manifest, pd.DataFrame) else T.read_manifest(manifest)
    if train_rows is None:
        train_rows = T.split_rows(man, cfg.train_split, cfg.max_tracks)
    if val_rows is None:
        val_rows = T.split_rows(man, cfg.val_split, cfg.max_tracks)
    train_rows = T.check_tracks(reader, train_rows, "train")
    val_rows = T.check_tracks(reader, val_rows, "val")
    if not len(train_rows):
        raise UserError(f"no training track of the manifest is complete in the store {store}")
    dims = T.feature_dims(reader, str(train_rows["track_id"].iloc[0]), cfg.features)
    return StoreSplit(str(store), reader, train_rows, val_rows, dims)


def build_data(
    config: TrainConfig,
    split: StoreSplit,
    keys: list[str],
    device: torch.device,
    info: DistInfo | None = None,
) -> TrainData:
    """Tracks, windows, statistics and the loader for the model's batch `keys`."""
    info = info or DistInfo()
    cfg, reader = config.data, split.reader
    paths = [cfg.features[k] for k in keys] + [cfg.face_valid]
    if "audio" in keys:
        paths.append(cfg.audio_valid)
    ids = list(split.train_rows["track_id"]) + list(split.val_rows["track_id"])
    groups = T.check_groups(reader, paths, ids)
    fingerprints = T.group_fingerprints(reader, groups)
    cached = ids if info.is_main else list(split.train_rows["track_id"])
    need = cache_bytes(reader, cached, cfg.features, keys)  # from metadata, before any read
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if info.enabled else 1
    cache, why = choose_cache(cfg.cache, device, need, processes=local)
    if info.is_main:
        (log.warning if cache == "stream" and cfg.cache != "stream" else log.info)("%s", why)

    def load(rows: pd.DataFrame) -> list[T.Track]:
        return [T.load_track(reader, r, cfg.features, keys, cfg, False) for _, r in rows.iterrows()]

    train_tracks = load(split.train_rows)
    val_tracks = load(split.val_rows) if info.is_main else []
    T.report_label_notes(train_tracks + val_tracks, "train+val")
    rates = T.positive_rates(train_tracks)
    if info.is_main:
        log.info("train: %d tracks, positive rates %s", len(train_tracks), T.format_rates(rates))
        if val_tracks:
            val_rates = T.format_rates(T.positive_rates(val_tracks))
            log.info("val: %d tracks, positive rates %s", len(val_tracks), val_rates)

    windows = training_windows(train_tracks, cfg)
    weights = (
        window_weights(train_tracks, windows, cfg, rates) if config.imbalance.sampler else None
    )
    pos_weight = T.pos_weights(train_tracks, config.imbalance)

    batch_size = config.batch_size()
    per_rank = len(windows) // info.world if info.world > 1 else len(windows)
    steps = max(1, math.ceil(per_rank / batch_size))
    if config.optim.steps_per_epoch:
        steps = min(steps, config.optim.steps_per_epoch)

    common = dict(seed=config.optim.seed)
    val_table = None
    if cache in ("gpu", "ram"):
        table = build_cache(cache, reader, train_tracks, cfg.features, keys, cfg, device)
        if val_tracks:
            val_table = build_cache(cache, reader, val_tracks, cfg.features, keys, cfg, device)
        loader = WindowLoader(cache, windows, cfg, batch_size, device, table=table, **common)
    else:
        source = StoreBatches(
            split.store, train_tracks, windows, cfg.features, keys, cfg, batch_size
        )
        loader = WindowLoader(cache, windows, cfg, batch_size, device, store=source, **common)
    return TrainData(
        split,
        keys,
        train_tracks,
        val_tracks,
        windows,
        weights,
        rates,
        pos_weight,
        loader,
        val_table,
        fingerprints,
        cache,
        batch_size,
        steps,
    )
