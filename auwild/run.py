"""A trained run loaded for prediction from Python: probabilities and decisions per frame.

Loads every model of the run (one, or one per fold) with `train.run.load_model` and predicts
a track with the trainer's whole-track inference (`train.inference.predict_probs`: evaluation
windows, the faceless rule), at the run's tuned thresholds; fold models are combined by the
run's rule (`train.folds.combine`), as `auwild-train predict` does.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from auwild.store import Store
from data_manifest.aus import N_AUS
from data_manifest.user_error import UserError
from train import tracks as T
from train.config import TrainConfig
from train.distributed import DistInfo, pick_device
from train.folds import combine
from train.inference import predict_probs
from train.loop import autocast_dtype
from train.metrics import binarize
from train.predict import check_trained_fingerprints
from train.run import load_model, model_dirs, read_run_info, thresholds_of

TRACK = "arrays"  # the track id given to arrays passed in by the caller


class ArraysReader:
    """One track's arrays in memory ({store array path: (T, ...)}), read through the two
    StoreReader calls whole-track inference makes (`read`, `token_storage`)."""

    def __init__(self, arrays: Mapping[str, np.ndarray]):
        self.arrays = arrays

    def read(self, tid: str, name: str, start: int = 0, stop=None, dequantize=True) -> np.ndarray:
        return self.arrays[name][start:stop]

    def token_storage(self, tid: str, name: str) -> None:
        return None  # given arrays are plain values (int8 tokens come dequantised from a store)


def as_numpy(values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


class Run:
    """A run directory's models, configuration and per-AU thresholds."""

    def __init__(self, path: Path, models: list[tuple[torch.nn.Module, dict, TrainConfig]], device):
        self.path = path
        self.info: dict[str, Any] = read_run_info(path)  # store, manifest, folds, recipe
        self.models = models
        self.device = device
        self.config: TrainConfig = models[0][2]
        self.keys: list[str] = list(models[0][1]["keys"])  # batch keys the model reads

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, models={len(self.models)}, features={self.features})"

    @property
    def features(self) -> dict[str, str]:
        """{batch key: store array path} the model reads."""
        return {k: self.config.data.features[k] for k in self.keys}

    @property
    def arrays(self) -> list[str]:
        """Store array paths `predict` needs: the features, the face mask (and the audio mask)."""
        data = self.config.data
        out = [*self.features.values(), data.face_valid]
        return out + ([data.audio_valid] if "audio" in self.keys else [])

    @property
    def thresholds(self) -> np.ndarray:
        """Per-AU decision thresholds (12,), tuned on validation; (K, 12) for K fold models."""
        thr = np.stack([thresholds_of(meta) for _, meta, _ in self.models])
        return thr[0] if len(thr) == 1 else thr

    def predict(self, arrays: Mapping[str, Any]):
        """(probabilities (T, 12) float32, decisions (T, 12) int8) for one track.

        `arrays`: {store array path: (T, ...) numpy array or tensor} holding `self.arrays`,
        e.g. `store.window(track, run.arrays)`. Frames without a face follow the run's rule
        (data.faceless_predict). Features enter the model as float16, as from the store; int8
        patch tokens given dequantised are therefore rounded to float16 (`predict_track` reads
        them as stored)."""
        missing = [p for p in self.arrays if p not in arrays]
        if missing:
            raise UserError(
                f"predict needs arrays {missing} (it has {sorted(arrays)}); see Run.arrays"
            )
        values = {p: as_numpy(arrays[p]) for p in self.arrays}
        lengths = {p: len(v) for p, v in values.items()}
        if len(set(lengths.values())) != 1:
            raise UserError(f"predict: arrays of different lengths {lengths}")
        reader = ArraysReader(values)

        def track_of(config: TrainConfig, keys: list[str]) -> T.Track:
            cfg = config.data
            n = len(values[cfg.face_valid])
            track = T.Track(
                TRACK,
                n,
                np.full((n, N_AUS), -1, np.int8),
                values[cfg.face_valid].astype(bool),
                values[cfg.audio_valid].astype(bool) if "audio" in keys else None,
            )
            if cfg.normalize == "track":
                T.track_means(reader, track, cfg.features, keys)
            return track

        return self._predict(reader, track_of)

    def predict_track(self, store: Store, track: str):
        """`predict` on a track of `store`, read as `auwild-train predict` reads it, after
        checking that the store's groups have the fingerprints the model was trained on."""
        reader = store.reader
        groups = T.check_groups(reader, self.arrays, [track])
        for _, meta, _ in self.models:
            check_trained_fingerprints(reader, groups, meta, f"run {self.path} on {store.url}")
        row = pd.Series({"track_id": track, "labels": ""})  # labels are not needed to predict

        def track_of(config: TrainConfig, keys: list[str]) -> T.Track:
            cfg = config.data
            return T.load_track(reader, row, cfg.features, keys, cfg, read_arrays=False)

        return self._predict(reader, track_of)

    def _predict(self, reader, track_of: Callable[[TrainConfig, list[str]], T.Track]):
        """Each model's probabilities over the track `track_of` makes (its arrays taken from
        `reader`), decided at its thresholds; fold models combined by the run's rule."""
        probs, thresholds = [], []
        for model, meta, config in self.models:
            keys = list(meta["keys"])
            track = track_of(config, keys)
            amp = autocast_dtype(config.optim.precision, self.device)
            bs = config.optim.batch_size  # evaluation windows per pass, as `auwild-train predict`
            features = config.data.features
            out = predict_probs(
                model, [track], keys, config.data, bs, self.device, amp, reader, features
            )
            probs.append(out[track.track_id])
            thresholds.append(thresholds_of(meta))
        if len(probs) == 1:
            return probs[0], binarize(probs[0], thresholds[0])
        mean, decisions = combine(probs, thresholds, self.config.folds.combine)
        return mean.astype(np.float32), decisions


def load_run(
    run_dir: str | os.PathLike, which: str = "best", device: str | torch.device = "auto"
) -> Run:
    """Load a run directory written by `auwild-train fit` (`which`: "best" or "last"
    checkpoint; `device`: "auto", "cpu", "cuda", ...)."""
    path = Path(run_dir)
    dev = pick_device(str(device), DistInfo())
    models = [load_model(d, which, dev) for d in model_dirs(path)]
    return Run(path, models, dev)
