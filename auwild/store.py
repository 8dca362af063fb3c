"""A feature store opened for reading from Python: tracks, arrays, windows, as numpy or torch.

A thin face over `extract.store.StoreReader`, which does every check: only complete tracks are
listed, and a missing or damaged chunk raises (MissingChunk, CorruptChunk), never zeros.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from extract.store import StoreReader

FORMATS = ("numpy", "torch")


def as_format(values: np.ndarray, format: str):
    """`values` as a numpy array or a torch tensor (a copy when numpy does not own the data, so
    a tensor never aliases a cached array)."""
    if format == "numpy":
        return values
    if format != "torch":
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    import torch

    return torch.from_numpy(values if values.flags.owndata else values.copy())


class Store:
    """Read-only view of a store (local path or fsspec URL such as s3://bucket/features.zarr).

    `reader` is the underlying StoreReader, for anything not wrapped here."""

    def __init__(self, reader: StoreReader):
        self.reader = reader

    @property
    def url(self) -> str:
        return self.reader.url

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def tracks(self) -> list[str]:
        """Sorted ids of the complete tracks (tracks being written are not listed)."""
        return self.reader.tracks()

    def arrays(self, track: str) -> list[str]:
        """Array paths of a track, e.g. ["face/valid", ..., "visual/dinov2/cls"]."""
        return self.reader.arrays(track)

    def n_frames(self, track: str) -> int:
        return self.reader.n_frames(track)

    def info(self, track: str) -> dict[str, Any]:
        """The track's attributes: n_frames, fps, source, complete groups, ..."""
        return self.reader.track_attrs(track)

    def shape(self, track: str, array: str) -> tuple[int, ...]:
        return self.reader.shape(track, array)

    def fingerprints(self) -> dict[str, str]:
        """{group: fingerprint} of every group registered in the store (from its root metadata;
        nothing read per track)."""
        return {g: str(e.get("fingerprint", "")) for g, e in self.reader.groups.items()}

    def read(
        self,
        track: str,
        array: str,
        start: int = 0,
        stop: int | None = None,
        format: str = "numpy",
    ):
        """Frames start..stop (T, ...) of one array of one track; int8 tokens come dequantised
        (float32). `format`: "numpy" or "torch"."""
        return as_format(self.reader.read(track, array, start, stop), format)

    def window(
        self,
        track: str,
        arrays: Iterable[str],
        start: int = 0,
        length: int | None = None,
        format: str = "numpy",
    ) -> dict[str, Any]:
        """{array path: frames start..start+length} for several arrays of one track (the whole
        track from `start` when `length` is None; fewer frames at the track's end)."""
        stop = None if length is None else int(start) + int(length)
        window = self.reader.read_window(track, list(arrays), start, stop)
        return {name: as_format(values, format) for name, values in window.items()}


def open_store(
    url: str,
    *,
    cache: bool | int = False,
    storage_options: Mapping[str, Any] | None = None,
) -> Store:
    """Open the store at a local path or fsspec URL (s3://, gs://, ...).

    `cache`: keep whole arrays in memory after their first read (True, or a byte budget).
    `storage_options`: passed to fsspec (e.g. {"endpoint_url": ...} for an S3 server)."""
    return Store(StoreReader(str(url), cache=cache, storage_options=storage_options))
