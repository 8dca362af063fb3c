"""The feature store: a versioned, fingerprinted, sharded Zarr v3 layout shared by extract and train.

    w = StoreWriter("features.zarr")                       # or "s3://bucket/features.zarr"
    w.register_group("visual/dinov2", fields={"model": ..., **storage.fingerprint_fields()})
    with w.open_track("video1_left", n_frames=T, attrs={"fps": 30.0}) as tw:
        tw.create_array("visual/dinov2/patch", shape=(T, 16, 16, 384), dtype="float16",
                        storage=TokenStorage("int8", pool=8))
        tw.write("visual/dinov2/patch", 0, tokens)         # in order, any sizes
        tw.finish_group("visual/dinov2")
    # leaving the block commits (status = complete written last); an exception aborts.
    # open_track takes the track's lease: TrackLeased when another live process writes it.

    r = StoreReader("features.zarr")
    r.require_groups(["visual/dinov2/patch"])
    x = r.read("video1_left", "visual/dinov2/patch", 100, 132)  # (32, 8, 8, 384) float32

Importing this package loads numpy only; zarr and fsspec are imported when a store is opened.
"""

from extract.store.fingerprint import (
    FingerprintMismatch,
    diff_fields,
    fingerprint_of,
    group_fingerprint,
)
from extract.store.integrity import CorruptChunk, MissingChunk
from extract.store.lease import LeaseLost, TrackLeased
from extract.store.location import StoreNotFound
from extract.store.quantize import TokenStorage
from extract.store.reader import GroupMissing, StoreReader
from extract.store.schema import SCHEMA_VERSION, InvalidTrackId, check_track_id, group_of
from extract.store.writer import (
    IncompleteTrack,
    StoreVersionError,
    StoreWriter,
    TrackExists,
    TrackWriter,
)

__all__ = [
    "SCHEMA_VERSION",
    "CorruptChunk",
    "FingerprintMismatch",
    "GroupMissing",
    "IncompleteTrack",
    "InvalidTrackId",
    "LeaseLost",
    "MissingChunk",
    "StoreNotFound",
    "StoreReader",
    "StoreVersionError",
    "StoreWriter",
    "TokenStorage",
    "TrackExists",
    "TrackLeased",
    "TrackWriter",
    "check_track_id",
    "diff_fields",
    "fingerprint_of",
    "group_fingerprint",
    "group_of",
]
