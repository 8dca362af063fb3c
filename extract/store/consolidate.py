"""Consolidating metadata: one file describing every track, so a remote reader opens a store fast.

A separate, repeatable step run when writing is done (writers never touch the root per track).
Readers still list `tracks/`, so tracks written after the last consolidation are not missed.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from extract.store.location import StoreLocation, StoreNotFound
from extract.store.writer import ROOT_META, check_schema


def consolidate_store(url: str, storage_options: Mapping[str, Any] | None = None) -> int:
    """Write consolidated metadata into the root of the store at `url`; returns the node count."""
    import zarr

    location = StoreLocation(str(url), dict(storage_options or {}))
    meta = location.read_json(ROOT_META)
    if meta is None:
        raise StoreNotFound(f"no auwild store at {location.url}")
    check_schema(meta.get("attributes", {}), location.url)
    store = location.zarr_store(read_only=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr warns that consolidation is not in the v3 spec yet
        group = zarr.consolidate_metadata(store)
    return len(group.metadata.consolidated_metadata.flattened_metadata)
