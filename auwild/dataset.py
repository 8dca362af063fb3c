"""Windows of one split of a manifest as a torch Dataset: features, labels and masks.

Built from the trainer's own parts: tracks joined from manifest and store by `train.tracks`
(labels, masks, subject normalisation, fingerprint checks), windows placed by
`train.windows`, and each item read from the store and assembled by the trainer's streaming
loader (`train.loaders.StoreBatches`, `assemble_window`), so an item is what training sees.
"""

from __future__ import annotations

import copy
import os

import numpy as np
import pandas as pd
import torch

from auwild.store import Store, open_store
from data_manifest.user_error import UserError
from train import tracks as T
from train.config import DataConfig, TrainConfig
from train.loaders import StoreBatches
from train.windows import training_windows, window_starts


def data_config(
    recipe: str | TrainConfig | None,
    features: dict[str, str] | None,
    window: int | None,
    stride: int | None,
) -> DataConfig:
    """The data section of a recipe (by name, or a run's config), with `features`, `window` and
    `stride` replaced when given."""
    from train.recipes import resolve

    if isinstance(recipe, TrainConfig):
        config = copy.deepcopy(recipe)
    else:
        config = resolve(recipe)
    if features is not None:
        config.data.features = dict(features)
    if window is not None:
        config.data.window = int(window)
    if stride is not None:
        config.data.stride = int(stride)
    return config.validate().data


class SplitDataset(torch.utils.data.Dataset):
    """Windows of `window` frames every `stride` frames over the tracks of one split.

    An item is a dict of tensors, T = window (frames past the track's end are padding, zeros
    with `mask` False):
      <key>        (T, ...) float32 for each batch key of `features` ({key: store array path});
                   int8 tokens dequantised, track means subtracted under normalize="track"
      labels       (T, 12) float32, 1 / 0, -1 unknown (AU order: auwild.AUS)
      mask         (T,) bool, the frame is inside the track
      face_valid   (T,) bool, the frame has a face
      train_mask   (T,) bool, the frame enters the training loss (labelled; with a face unless
                   data.faceless_train = "keep")
      audio_valid  (T,) bool, only when an "audio" key is among the features
    The default DataLoader collate stacks items into the trainer's batches (B, T, ...).

    `recipe` (a name or a run's TrainConfig) gives features, window, stride and normalisation;
    `features`, `window`, `stride` replace its values. `labelled_only` keeps the windows the
    trainer trains on (at least one frame in the loss); False keeps every window (test splits).
    DataLoader worker processes open the store again from its URL, as the trainer's workers
    do: S3 credentials and endpoint then come from the environment, not `storage_options`.
    """

    def __init__(
        self,
        store: Store | str,
        manifest: str | os.PathLike | pd.DataFrame,
        split: str = "train",
        *,
        features: dict[str, str] | None = None,
        recipe: str | TrainConfig | None = None,
        window: int | None = None,
        stride: int | None = None,
        labelled_only: bool = True,
    ):
        store = store if isinstance(store, Store) else open_store(str(store))
        reader = store.reader
        self.config = cfg = data_config(recipe, features, window, stride)
        self.split = split
        self.keys = sorted(cfg.features)
        man = manifest if isinstance(manifest, pd.DataFrame) else T.read_manifest(str(manifest))
        rows = T.check_tracks(reader, T.split_rows(man, split, cfg.max_tracks), split)
        if not len(rows):
            raise UserError(
                f"no track of split {split!r} of the manifest is complete in {store.url}"
            )
        paths = [cfg.features[k] for k in self.keys] + [cfg.face_valid]
        if "audio" in self.keys:
            paths.append(cfg.audio_valid)
        T.check_groups(reader, paths, list(rows["track_id"]))
        self.tracks: list[T.Track] = [
            T.load_track(reader, r, cfg.features, self.keys, cfg, read_arrays=False)
            for _, r in rows.iterrows()
        ]
        if labelled_only:
            self.windows = training_windows(self.tracks, cfg)  # (W, 2) track index, start
        else:
            self.windows = np.asarray(
                [
                    (i, int(s))
                    for i, t in enumerate(self.tracks)
                    for s in window_starts(t.n_frames, cfg.window, cfg.stride)
                ],
                dtype=np.int64,
            )
        self._index = {t.track_id: t for t in self.tracks}
        self._source = StoreBatches(
            store.url, self.tracks, self.windows, cfg.features, self.keys, cfg, 1, reader
        )
        self._source.order = np.arange(len(self.windows))
        self._source.finish = True  # float32 items, as a CPU trainer's

    @property
    def track_ids(self) -> list[str]:
        return [t.track_id for t in self.tracks]

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        batch = self._source[int(i)]  # (1, T, ...)
        return {k: v[0] for k, v in batch.items()}

    def window_of(self, i: int) -> tuple[str, int]:
        """(track id, first frame) of item i."""
        index, start = self.windows[int(i)]
        return self.tracks[int(index)].track_id, int(start)

    def labels(self, track: str) -> np.ndarray:
        """The whole track's labels (T, 12) int8, -1 unknown (the manifest's labels file aligned
        to the store's frames)."""
        if track not in self._index:
            raise KeyError(f"track {track!r} is not in split {self.split!r} ({len(self)} windows)")
        return self._index[track].labels

    def __repr__(self) -> str:
        return (
            f"SplitDataset(split={self.split!r}, tracks={len(self.tracks)}, windows={len(self)}, "
            f"window={self.config.window}, keys={self.keys})"
        )
