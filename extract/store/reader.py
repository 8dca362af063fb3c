"""Reading a store, locally or through any fsspec URL: complete tracks, cheap window reads.

Only tracks whose status is complete are listed; a window read `read(tid, name, a, b)` fetches
just the chunks covering frames a..b (sharded arrays are read by byte range). Consolidated
metadata, when present, saves one request per track; tracks written after the last
`consolidate` are still found by listing.

Local arrays of uncompressed chunks (patch tokens, CLS, audio features) are read straight from
their chunk files into the output (chunk_files.py: no codec pipeline, checksums checked);
everything else goes through zarr. `direct=False` or `AUWILD_DIRECT_READ=0` sends every read
through zarr, the reference the direct read is tested against.

Readers never invent data: a missing chunk file or a missing array of a complete group raises
MissingChunk, a chunk that does not decode (checksum, compressor) raises CorruptChunk; both are
one line naming track, array and file (integrity.py).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from extract.store.chunk_files import ChunkFiles, direct_enabled, plan_chunk_files
from extract.store.fingerprint import (
    FingerprintMismatch,
    check_same_group,
    check_same_track_entry,
)
from extract.store.integrity import MissingChunk, make_strict, read_checked
from extract.store.location import StoreLocation, StoreNotFound
from extract.store.quantize import TokenStorage
from extract.store.schema import (
    SCALE_SUFFIX,
    STATUS_ATTR,
    STATUS_COMPLETE,
    TRACK_ARRAYS,
    TRACKS,
    check_track_id,
    group_of,
    required_arrays,
    scale_path,
)
from extract.store.writer import ROOT_META, check_schema


class GroupMissing(LookupError):
    """A group the caller needs is absent from the store or from one of its tracks."""


class StoreReader:
    """Read-only view of a store at a local path or fsspec URL."""

    def __init__(
        self,
        url: str,
        cache: bool | int = False,
        storage_options: Mapping[str, Any] | None = None,
        consolidated: bool | None = None,
        direct: bool | None = None,
    ):
        """`cache`: keep whole arrays in memory after their first read (True, or a byte budget).
        `consolidated`: use consolidated metadata (None: when present).
        `direct`: read uncompressed local chunk files directly (None: unless AUWILD_DIRECT_READ=0)."""
        self.location = StoreLocation(str(url), dict(storage_options or {}))
        self.url = self.location.url
        meta = self.location.read_json(ROOT_META)
        if meta is None:
            raise StoreNotFound(f"no auwild store at {self.url} (no {ROOT_META})")
        self.attrs: dict = dict(meta.get("attributes", {}))
        self.direct = self.location.local and (direct_enabled() if direct is None else bool(direct))
        check_schema(self.attrs, self.url)
        store = self.location.zarr_store(read_only=True)
        if self.location.pipeline == "zarrs":  # reads files itself: checked per read (integrity.py)
            self.store = store
            self._exists = lambda key: os.path.exists(self.location.path(key))
        else:
            self.store = make_strict(store, self.location.path)
            self._exists = None
        cm = meta.get("consolidated_metadata") if consolidated is not False else None
        self._consolidated: dict = dict((cm or {}).get("metadata", {}))
        self._use_consolidated = bool(self._consolidated)
        self._track_meta: dict[str, dict] = {}
        self._track_groups: dict[str, Any] = {}
        self._array_cache: dict[tuple[str, str], Any] = {}
        self._listing: list[str] | None = None
        self._root_group = None
        self._cache_budget = None if cache is True else (int(cache) if cache else 0)
        self._mem: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._mem_bytes = 0
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- store level
    @property
    def groups(self) -> dict:
        """{group name: {"fingerprint", "fields"}} registered at the root."""
        return dict(self.attrs.get("groups", {}))

    @property
    def fingerprint(self) -> str | None:
        return self.attrs.get("fingerprint")

    def refresh(self) -> None:
        """Forget listings and metadata (to see tracks written since this reader opened)."""
        self.location.refresh()
        self._listing = None
        self._track_meta.clear()
        self._track_groups.clear()
        self._array_cache.clear()
        self._consolidated = {}
        self._use_consolidated = False
        self._root_group = None

    def _all_track_ids(self) -> list[str]:
        if self._listing is None:
            self._listing = [t for t in self.location.list_dirs(TRACKS) if not t.startswith(".")]
        return self._listing

    def _meta(self, tid: str) -> dict:
        """Track group metadata: from consolidated metadata when complete there, else its zarr.json."""
        if tid not in self._track_meta:
            meta = self._consolidated.get(f"{TRACKS}/{tid}")
            if not meta or meta.get("attributes", {}).get(STATUS_ATTR) != STATUS_COMPLETE:
                try:
                    meta = self.location.read_json(f"{TRACKS}/{tid}/{ROOT_META}") or {}
                except ValueError:  # a metadata file cut short by a crash: not complete
                    meta = {}
                self._track_meta[tid] = {"meta": meta, "consolidated": False}
            else:
                self._track_meta[tid] = {"meta": meta, "consolidated": True}
        return self._track_meta[tid]["meta"]

    def _status(self, tid: str) -> str | None:
        return self._meta(tid).get("attributes", {}).get(STATUS_ATTR)

    def tracks(self) -> list[str]:
        """Sorted ids of the complete tracks."""
        return [t for t in self._all_track_ids() if self._status(t) == STATUS_COMPLETE]

    def incomplete_tracks(self) -> list[str]:
        """Sorted ids of tracks present but not complete (being written, or left by a crash)."""
        return [t for t in self._all_track_ids() if self._status(t) != STATUS_COMPLETE]

    def _check(self, tid: str) -> None:
        check_track_id(tid)
        if self._status(tid) != STATUS_COMPLETE:
            raise KeyError(f"track {tid!r} is not a complete track of {self.url}")

    # ---------------------------------------------------------------- track level
    def track_attrs(self, tid: str) -> dict:
        """The track's attributes (n_frames, fps, source, groups, status, ...)."""
        self._check(tid)
        return dict(self._meta(tid).get("attributes", {}))

    def n_frames(self, tid: str) -> int:
        return int(self.track_attrs(tid)["n_frames"])

    def _group(self, tid: str):
        if tid not in self._track_groups:
            self._check(tid)
            path = f"{TRACKS}/{tid}"
            with self.location.zarr_pipeline():
                self._track_groups[tid] = self._open_group(tid, path)
        return self._track_groups[tid]

    def _open_group(self, tid: str, path: str):
        import zarr

        if self._track_meta[tid]["consolidated"]:
            if self._root_group is None:
                self._root_group = zarr.open_group(self.store, mode="r", use_consolidated=True)
            return self._root_group[path]
        return zarr.open_group(self.store, path=path, mode="r", use_consolidated=False)

    def _all_arrays(self, tid: str) -> dict[str, Any]:
        import zarr

        key = (tid, "")
        if key not in self._array_cache:
            found = {}
            group = self._group(tid)
            with self.location.zarr_pipeline():  # array objects take the pipeline when made
                for name, node in group.members(max_depth=None):
                    if isinstance(node, zarr.Array):
                        found[name] = node
            self._array_cache[key] = found
        return self._array_cache[key]

    def required(self, tid: str) -> dict[str, str | None]:
        """{array path: group (None for track arrays)} the track's complete groups must hold."""
        out: dict[str, str | None] = {path: None for path in TRACK_ARRAYS}
        for grp, entry in self.track_attrs(tid).get("groups", {}).items():
            for path in required_arrays(grp, entry):
                out[path] = grp
        return out

    def arrays(self, tid: str) -> list[str]:
        """Array paths of the track's complete groups (scale arrays of int8 tokens left out).

        Arrays the schema requires of a complete group are listed even when missing from the
        store; reading one raises MissingChunk."""
        done = set(self.track_attrs(tid).get("groups", {}))
        out = set(p for p in self.required(tid) if not p.endswith(SCALE_SUFFIX))
        for name in self._all_arrays(tid):
            if name.endswith(SCALE_SUFFIX):
                continue
            grp = group_of(name)
            if grp is None or grp in done:
                out.add(name)
        return sorted(out)

    def array(self, tid: str, name: str):
        """The zarr.Array of `name` in track `tid` (stored values: int8 tokens stay int8).

        Only arrays of the track's complete groups: a group being written or replaced is not
        read (GroupMissing)."""
        grp = group_of(name)
        if grp is not None and grp not in self.track_attrs(tid).get("groups", {}):
            raise GroupMissing(
                f"track {tid!r} of {self.url}: array {name!r} belongs to group {grp!r}, which is "
                "not complete in this track"
            )
        arrays = self._all_arrays(tid)
        if name not in arrays:
            required = self.required(tid)
            if name in required:
                what = (
                    f"group {required[name]!r} is complete"
                    if required[name]
                    else "every track has it"
                )
                raise MissingChunk(
                    f"track {tid!r} array {name!r}: missing from {self.url} although {what} "
                    f"({self.location.path(f'{TRACKS}/{tid}/{name}')} is gone)"
                )
            raise KeyError(
                f"track {tid!r} of {self.url} has no array {name!r} (it has {sorted(arrays)})"
            )
        return arrays[name]

    def shape(self, tid: str, name: str) -> tuple[int, ...]:
        return tuple(self.array(tid, name).shape)

    def dtype(self, tid: str, name: str) -> np.dtype:
        return np.dtype(self.array(tid, name).dtype)

    def token_storage(self, tid: str, name: str) -> TokenStorage | None:
        """How patch tokens `name` are stored (None for plain arrays)."""
        key = (tid, "storage:" + name)
        if key not in self._array_cache:
            attrs = self.array(tid, name).attrs.get("token_storage")
            self._array_cache[key] = None if attrs is None else TokenStorage.from_attrs(dict(attrs))
        return self._array_cache[key]

    def chunk_files(self, tid: str, name: str) -> ChunkFiles | None:
        """How array `name` of track `tid` is read directly (None: through zarr)."""
        key = (tid, "direct:" + name)
        if key not in self._array_cache:
            plan = None
            if self.direct:
                arr = self.array(tid, name)
                plan = plan_chunk_files(self.location.path(arr.path), arr.metadata.to_dict())
            self._array_cache[key] = plan
        return self._array_cache[key]

    def _read_range(self, tid: str, name: str, start: int, stop: int) -> np.ndarray:
        """Stored values of frames start..stop: directly from the chunk files when possible."""
        plan = self.chunk_files(tid, name)
        if plan is not None:
            return plan.read(start, stop, tid, name)
        arr = self.array(tid, name)
        return read_checked(arr, start, stop, tid, name, self.location.path, self._exists)

    def _raw(self, tid: str, name: str, start: int, stop: int) -> np.ndarray:
        if self._cache_budget == 0:
            return self._read_range(tid, name, start, stop)
        arr = self.array(tid, name)
        key = (tid, name)
        with self._lock:
            full = self._mem.get(key)
            if full is not None:
                self._mem.move_to_end(key)
        if full is None:
            full = self._read_range(tid, name, 0, int(arr.shape[0]))
            with self._lock:
                self._mem[key] = full
                self._mem_bytes += full.nbytes
                while (
                    self._cache_budget is not None
                    and self._mem_bytes > self._cache_budget
                    and len(self._mem) > 1
                ):
                    _, old = self._mem.popitem(last=False)
                    self._mem_bytes -= old.nbytes
        return full[start:stop]

    def read(
        self, tid: str, name: str, start: int = 0, stop: int | None = None, dequantize: bool = True
    ) -> np.ndarray:
        """Frames start..stop of array `name` of track `tid` (int8 tokens -> float32 unless dequantize=False)."""
        plan = self.chunk_files(tid, name)  # known after the first read: no metadata walk
        n = plan.shape[0] if plan is not None else self.shape(tid, name)[0]
        stop = n if stop is None else min(int(stop), n)
        start = max(0, int(start))
        values = self._raw(tid, name, start, stop)
        storage = self.token_storage(tid, name)
        if storage is not None and storage.kind == "int8" and dequantize:
            scale = self._raw(tid, scale_path(name), start, stop)
            return TokenStorage.decode(values, scale)
        return values

    def read_window(
        self, tid: str, names: Iterable[str], start: int = 0, stop: int | None = None
    ) -> dict[str, np.ndarray]:
        """{name: frames start..stop} for several arrays of one track (int8 tokens as float32)."""
        return {name: self.read(tid, name, start, stop) for name in names}

    def read_scale(
        self, tid: str, name: str, start: int = 0, stop: int | None = None
    ) -> np.ndarray:
        """Per-token scales (n, h, w) float32 of int8 tokens `name`."""
        return self._raw(
            tid, scale_path(name), start, self.shape(tid, name)[0] if stop is None else stop
        )

    # ---------------------------------------------------------------- fingerprints
    def require_groups(
        self, names: Iterable[str], tracks: Iterable[str] | None = None
    ) -> dict[str, str]:
        """Check that the groups of `names` (group names or array paths) agree everywhere.

        Every listed (default: every complete) track must hold each group complete with the
        root's fingerprint, and all of them must record the same per-track fields (a track from
        full frames and one from aligned crops do not mix); raises FingerprintMismatch naming
        the differing fields (`track.aligned_input`), or GroupMissing. Returns {group: fingerprint}.
        """
        wanted = []
        for n in names:
            grp = n if n in self.groups else group_of(n)
            if grp is not None and grp not in wanted:
                wanted.append(grp)
        root = self.groups
        for grp in wanted:
            if grp not in root:
                raise GroupMissing(f"{self.url} has no group {grp!r} (it has {sorted(root)})")
        first: dict[str, tuple[str, dict]] = {}
        for tid in self.tracks() if tracks is None else list(tracks):
            tgroups = self.track_attrs(tid).get("groups", {})
            for grp in wanted:
                if grp not in tgroups:
                    raise GroupMissing(f"track {tid!r} of {self.url} has no complete group {grp!r}")
                try:
                    check_same_group(grp, root[grp], tgroups[grp], ("store", f"track {tid}"))
                    ref_tid, ref = first.setdefault(grp, (tid, tgroups[grp]))
                    check_same_track_entry(
                        grp, ref, tgroups[grp], (f"track {ref_tid}", f"track {tid}")
                    )
                except FingerprintMismatch as exc:
                    raise FingerprintMismatch(f"{self.url}: {exc}", exc.fields) from None
        return {grp: root[grp]["fingerprint"] for grp in wanted}
