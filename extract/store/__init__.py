"""The feature store: a versioned, fingerprinted, sharded Zarr v3 layout shared by extract and train.

Importing this package loads numpy only; zarr and fsspec are imported when a store is opened.
"""

from extract.store.fingerprint import FingerprintMismatch, diff_fields, fingerprint_of
from extract.store.location import StoreNotFound
from extract.store.quantize import TokenStorage
from extract.store.reader import GroupMissing, StoreReader
from extract.store.schema import SCHEMA_VERSION, InvalidTrackId, check_track_id, group_of
from extract.store.writer import StoreVersionError, StoreWriter, TrackExists, TrackWriter

__all__ = [
    "SCHEMA_VERSION",
    "FingerprintMismatch",
    "GroupMissing",
    "InvalidTrackId",
    "StoreNotFound",
    "StoreReader",
    "StoreVersionError",
    "StoreWriter",
    "TokenStorage",
    "TrackExists",
    "TrackWriter",
    "check_track_id",
    "diff_fields",
    "fingerprint_of",
    "group_of",
]
