"""Missing or damaged data is an error naming track, array and file, never fill values.

Zarr returns the fill value for a chunk whose file does not exist; arrays of this store are
written with `write_empty_chunks=True`, so every shard file exists and a missing one is a fault.
`StrictStore` wraps the zarr store of a reader so that a missing chunk key raises MissingChunk
instead. Decoding errors (a failed checksum, Blosc errors) are turned into one-line CorruptChunk
errors by `read_checked`, which names the shard file that fails.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from extract.store.schema import TRACKS

CHUNK_DIR = "c"  # zarr v3 default chunk key encoding: <array>/c/<i>/<j>/...


class MissingChunk(LookupError):
    """A chunk (shard) file of a complete array is missing."""


class CorruptChunk(ValueError):
    """A chunk (shard) file does not decode: checksum mismatch, compressor error, short file."""


def split_chunk_key(key: str) -> tuple[str, str] | None:
    """'tracks/<tid>/<array>/c/0/0' -> (tid, array); None for anything that is not a chunk key."""
    parts = key.split("/")
    if len(parts) < 4 or parts[0] != TRACKS or CHUNK_DIR not in parts[2:]:
        return None
    i = len(parts) - 1 - parts[::-1].index(CHUNK_DIR)
    if i < 3 or not all(p.isdigit() for p in parts[i + 1 :]):
        return None
    return parts[1], "/".join(parts[2:i])


def expected_chunk_files(meta: dict) -> list[str]:
    """Keys (relative to the array folder) of every chunk file an array's `zarr.json` implies."""
    shape = [int(s) for s in meta["shape"]]
    grid = [int(c) for c in meta["chunk_grid"]["configuration"]["chunk_shape"]]
    counts = [-(-s // c) for s, c in zip(shape, grid)]
    sep = meta.get("chunk_key_encoding", {}).get("configuration", {}).get("separator", "/")
    return [
        CHUNK_DIR + sep + sep.join(str(i) for i in idx)
        for idx in itertools.product(*(range(c) for c in counts))
    ]


def make_strict(store, describe):
    """Wrap zarr `store` so a missing chunk raises MissingChunk; `describe(key)` names the file."""
    from zarr.storage import WrapperStore

    class StrictStore(WrapperStore):
        """A zarr store on which an absent chunk is an error (metadata keys may be absent)."""

        async def get(self, key, prototype, byte_range=None):
            value = await self._store.get(key, prototype, byte_range)
            if value is None:
                _missing(key, describe)
            return value

        async def get_partial_values(self, prototype, key_ranges):
            key_ranges = list(key_ranges)
            values = await self._store.get_partial_values(prototype, key_ranges)
            for (key, _), value in zip(key_ranges, values):
                if value is None:
                    _missing(key, describe)
            return values

    return StrictStore(store)


def _missing(key: str, describe) -> None:
    found = split_chunk_key(key)
    if found is None:
        return  # metadata probes (zarr.json, v2 keys) may be absent
    tid, name = found
    raise MissingChunk(f"track {tid!r} array {name!r}: chunk file {describe(key)} is missing")


def first_line(exc: BaseException) -> str:
    """One short line for a decode error (zarr's checksum error shows raw bytes: named instead)."""
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    if "checksum do not match" in line:
        return "crc32c checksum mismatch"
    return f"{type(exc).__name__}: {line[:200]}"


def read_checked(arr, start: int, stop: int, tid: str, name: str, describe) -> object:
    """arr[start:stop] with decode failures turned into CorruptChunk naming the shard file."""
    try:
        return arr[start:stop]
    except (MissingChunk, CorruptChunk):
        raise
    except Exception as exc:  # codec errors come from several libraries; all mean a bad file
        bad = _find_bad_shard(arr, range(start, stop), exc)
        raise CorruptChunk(
            f"track {tid!r} array {name!r}: chunk file {describe(bad)} does not decode "
            f"(frames {start}..{stop}; {first_line(exc)})"
        ) from None


def _find_bad_shard(arr, frames: Iterable[int], exc: Exception) -> str:
    """The key of the first shard in `frames` that fails to read (found one shard at a time)."""
    frames = list(frames)
    step = int(arr.shards[0]) if arr.shards else int(arr.chunks[0])
    path = arr.path
    ndim = len(arr.shape)
    for s in sorted({f // step for f in frames}):
        try:
            arr[s * step : min(arr.shape[0], (s + 1) * step)]
        except Exception:
            return f"{path}/{CHUNK_DIR}/" + "/".join([str(s)] + ["0"] * (ndim - 1))
    return f"{path}/{CHUNK_DIR}/?"
