"""Writing a store: one root created once, then tracks written independently, each made visible last.

Concurrency model: the root metadata (schema version, group fingerprints) is written when the
store is created and when a group is registered, never per track. A track lives entirely under
`tracks/<track_id>/`; its `zarr.json` carries `status = "writing"` until every array is written,
then is replaced (atomically) with `status = "complete"`. So processes writing different tracks
touch disjoint files, and a crash leaves at most a track a reader sees as incomplete.

Arrays are chunked along time and sharded (one shard file holds many chunks); the writer buffers
up to one shard per array and writes whole shards, so memory stays flat on long tracks and no
shard is ever rewritten.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import random
import socket
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from extract.store.fingerprint import check_same_group, group_entry, store_fingerprint
from extract.store.location import StoreLocation, StoreNotFound
from extract.store.quantize import TokenStorage
from extract.store.schema import (
    SCHEMA_VERSION,
    STATUS_ATTR,
    STATUS_COMPLETE,
    STATUS_WRITING,
    TRACKS,
    check_track_id,
    group_of,
    scale_path,
)

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20  # target bytes of one chunk (the unit a window read decompresses)
SHARD_BYTES = 64 << 20  # target bytes of one shard file (the unit the writer buffers and writes)
ROOT_META = "zarr.json"


class StoreVersionError(RuntimeError):
    """The store was written with another schema version than this code reads."""


class TrackExists(FileExistsError):
    """A complete track exists and neither overwrite nor add_groups was asked for."""


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("auwild")
    except PackageNotFoundError:
        return "0+unknown"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def check_schema(attrs: Mapping[str, Any], url: str) -> None:
    """Raise StoreVersionError unless `attrs` are the root attrs of a store of SCHEMA_VERSION."""
    found = attrs.get("schema_version")
    if found is None:
        raise StoreVersionError(
            f"{url} is a Zarr group but not an auwild feature store (no schema_version)"
        )
    if found != SCHEMA_VERSION:
        raise StoreVersionError(
            f"{url} has store schema version {found}; this auwild ({package_version()}) reads version "
            f"{SCHEMA_VERSION}. Re-extract the store, or use the auwild version that wrote it "
            f"({attrs.get('package_version', 'unknown')})."
        )


def chunk_layout(
    frame_shape: tuple[int, ...],
    itemsize: int,
    n_frames: int,
    chunk_bytes: int = CHUNK_BYTES,
    shard_bytes: int = SHARD_BYTES,
) -> tuple[int, int]:
    """(frames per chunk, frames per shard) for an array of `n_frames` frames of `frame_shape`."""
    frame_bytes = max(1, int(np.prod(frame_shape, dtype=np.int64)) * itemsize)
    n = max(1, n_frames)
    chunk = 1 << max(0, int(np.floor(np.log2(max(1, chunk_bytes // frame_bytes)))))
    if chunk >= n:
        return n, n  # one chunk, one shard
    per_shard = max(1, shard_bytes // (chunk * frame_bytes))
    n_chunks = -(-n // chunk)
    return chunk, chunk * min(per_shard, n_chunks)


def _codecs(dtype: np.dtype):
    from zarr.codecs import BloscCodec, BloscShuffle

    shuffle = BloscShuffle.bitshuffle if dtype.kind == "b" else BloscShuffle.shuffle
    return BloscCodec(cname="zstd", clevel=3, shuffle=shuffle)


class StoreWriter:
    """Opens (or creates) a store for writing tracks and registering groups."""

    def __init__(
        self,
        url: str,
        create: bool = True,
        *,
        extractor_config: Mapping[str, Any] | None = None,
        models: Mapping[str, Any] | None = None,
        storage_options: Mapping[str, Any] | None = None,
        chunk_bytes: int = CHUNK_BYTES,
        shard_bytes: int = SHARD_BYTES,
    ):
        self.location = StoreLocation(str(url), dict(storage_options or {}))
        self.url = self.location.url
        self.chunk_bytes = chunk_bytes  # target chunk size (see chunk_layout)
        self.shard_bytes = shard_bytes  # target shard size = writer buffer per array
        self.store = self.location.zarr_store(read_only=False)
        self._groups: dict | None = None  # root groups as last read or written by this writer
        self.consolidated = False  # the root holds consolidated metadata (stale once tracks change)
        attrs = self._read_root_attrs()
        if attrs is None:
            if not create:
                raise StoreNotFound(f"no auwild store at {self.url} (use create=True to make one)")
            self._create_root(extractor_config, models)
        else:
            check_schema(attrs, self.url)
            extra = {}
            if extractor_config is not None:
                extra["extractor"] = dict(extractor_config)
            if models is not None:
                extra["models"] = dict(models)
            if extra:
                self._update_root_attrs(lambda a: _merge_keys(a, extra))
        self._ensure_tracks_group()

    # ---------------------------------------------------------------- root metadata
    def _read_root_attrs(self) -> dict | None:
        meta = self.location.read_json(ROOT_META)
        if meta is None:
            return None
        self.consolidated = bool(meta.get("consolidated_metadata"))
        return dict(meta.get("attributes", {}))

    def _create_root(self, extractor_config, models) -> None:
        attrs = {
            "schema_version": SCHEMA_VERSION,
            "package_version": package_version(),
            "created": _now(),
            "extractor": dict(extractor_config or {}),
            "models": dict(models or {}),
            "groups": {},
            "fingerprint": store_fingerprint({}),
        }
        meta = {"zarr_format": 3, "node_type": "group", "attributes": attrs}
        path = self.location.path(ROOT_META)
        if self.location.local:
            # exclusive and atomic: a second process creating the same store at once keeps the
            # first root, and nobody ever reads a half-written one
            os.makedirs(self.location.root, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.location.root, prefix=".tmp-")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(meta, f, indent=2)
                os.link(tmp, path)
            except FileExistsError:
                check_schema(self._read_root_attrs() or {}, self.url)
            finally:
                os.unlink(tmp)
        elif not self.location.exists(ROOT_META):
            self.location.write_json(ROOT_META, meta)

    def _ensure_tracks_group(self) -> None:
        key = f"{TRACKS}/{ROOT_META}"
        if not self.location.exists(key):
            self.location.write_json(
                key, {"zarr_format": 3, "node_type": "group", "attributes": {}}
            )

    def _update_root_attrs(self, change: Callable[[dict], dict]) -> dict:
        """Apply `change` to the root attrs with read, write, re-read and retry.

        Root attrs change only when a group is registered, which every process of a job does with
        the same fields; the re-read catches the rare lost update of two different registrations.
        """
        for attempt in range(8):
            meta = self.location.read_json(ROOT_META) or {}
            attrs = dict(meta.get("attributes", {}))
            new = change(dict(attrs))
            if new == attrs:
                return attrs
            meta["attributes"] = new
            self.location.write_json(ROOT_META, meta)
            time.sleep(random.uniform(0.005, 0.03) * (attempt + 1))
            self.location.refresh()
            again = dict((self.location.read_json(ROOT_META) or {}).get("attributes", {}))
            if change(dict(again)) == again:
                return again
        raise RuntimeError(
            f"could not update the root attributes of {self.url}: concurrent writers keep replacing them"
        )

    @property
    def attrs(self) -> dict:
        return self._read_root_attrs() or {}

    @property
    def groups(self) -> dict:
        """{group name: {"fingerprint", "fields"}} registered at the root (as last read)."""
        if self._groups is None:
            self._groups = dict(self.attrs.get("groups", {}))
        return dict(self._groups)

    def refresh_groups(self) -> dict:
        """Re-read the root's groups (another process may have registered some)."""
        self._groups = None
        return self.groups

    def register_group(self, name: str, fields: Mapping[str, Any]) -> str:
        """Register a group's fingerprint fields at the root (idempotent); returns its fingerprint.

        Raises FingerprintMismatch naming the differing fields when the store already has the
        group with other fields.
        """
        entry = group_entry(fields)
        existing = self.refresh_groups().get(name)
        if existing is not None:
            check_same_group(name, existing, entry, ("store", "new"))
            return existing["fingerprint"]

        def add(attrs: dict) -> dict:
            groups = dict(attrs.get("groups", {}))
            if name in groups:
                check_same_group(name, groups[name], entry, ("store", "new"))
                return attrs
            groups[name] = entry
            attrs["groups"] = groups
            attrs["fingerprint"] = store_fingerprint(groups)
            return attrs

        self._groups = dict(self._update_root_attrs(add).get("groups", {}))
        return entry["fingerprint"]

    # ---------------------------------------------------------------- tracks
    def track_status(self, track_id: str) -> str | None:
        """ "complete", another status (an unfinished write), or None when the track is absent."""
        meta = self.location.read_json(f"{TRACKS}/{check_track_id(track_id)}/{ROOT_META}")
        if meta is None:
            return None
        return str(meta.get("attributes", {}).get(STATUS_ATTR, STATUS_WRITING))

    def open_track(
        self,
        track_id: str,
        n_frames: int | None = None,
        attrs: Mapping[str, Any] | None = None,
        overwrite: bool = False,
        add_groups: bool = False,
        row: object | None = None,
    ) -> TrackWriter:
        """Start writing a track (or, with add_groups, reopen a complete one to add new groups).

        A complete track raises TrackExists unless `overwrite` (delete and rewrite) or
        `add_groups`. An unfinished track left by a crash is deleted and started again.
        `row` names the manifest row in the error for an invalid track id.
        """
        check_track_id(track_id, row)
        status = self.track_status(track_id)
        key = f"{TRACKS}/{track_id}"
        if status == STATUS_COMPLETE and self.consolidated and (add_groups or overwrite):
            log.warning(
                "%s has consolidated metadata; run `auwild-extract consolidate %s` after changing "
                "complete track %s, or readers keep its old metadata",
                self.url,
                self.url,
                track_id,
            )
        if status == STATUS_COMPLETE and add_groups and not overwrite:
            return TrackWriter(self, track_id, n_frames, attrs, adding=True)
        if status == STATUS_COMPLETE and not overwrite:
            raise TrackExists(
                f"track {track_id!r} is already complete in {self.url}; pass overwrite=True to rewrite "
                "it or add_groups=True to add new groups"
            )
        if n_frames is None:
            raise ValueError(f"track {track_id!r}: n_frames is needed to write a new track")
        if status is not None:
            log.info("track %s in %s: removing the previous (%s) copy", track_id, self.url, status)
            self.location.delete(key)
        return TrackWriter(self, track_id, n_frames, attrs, adding=False)


def _merge_keys(attrs: dict, extra: dict) -> dict:
    for k, v in extra.items():
        if attrs.get(k) != v:
            merged = dict(attrs.get(k) or {})
            merged.update(v)
            attrs[k] = merged
    return attrs


@dataclass
class _ArrayState:
    """One array being written: where the stream is and what is buffered."""

    array: Any  # zarr.Array of stored values
    scale: Any | None  # zarr.Array of per-token scales (int8 tokens only)
    storage: TokenStorage | None
    frame_shape: tuple[int, ...]  # shape of one input frame (before pooling)
    dtype: np.dtype  # input dtype expected (cast on write)
    shard_frames: int
    pos: int = 0  # frames received
    flushed: int = 0  # frames written to the store
    pieces: list = field(default_factory=list)  # encoded (values, scale|None) not yet written
    buffered: int = 0


class TrackWriter:
    """Writes the arrays of one track; visible to readers only after commit()."""

    def __init__(self, writer: StoreWriter, track_id: str, n_frames, attrs, adding: bool):
        import zarr

        self.writer = writer
        self.track_id = track_id
        self.key = f"{TRACKS}/{track_id}"
        self.adding = adding  # reopened complete track: only new groups may be written
        self._arrays: dict[str, _ArrayState] = {}
        self._finished: dict[str, dict] = {}
        self._committed = False
        if adding:
            self.group = zarr.open_group(
                writer.store, path=self.key, mode="r+", use_consolidated=False
            )
            self._attrs = dict(self.group.attrs.asdict())
            self.n_frames = int(self._attrs["n_frames"])
            if n_frames is not None and int(n_frames) != self.n_frames:
                raise ValueError(
                    f"track {track_id!r} has {self.n_frames} frames in {writer.url}, not {n_frames}"
                )
            if attrs:
                self._attrs.update(dict(attrs))
        else:
            self.n_frames = int(n_frames)
            self._attrs = {
                **dict(attrs or {}),
                "n_frames": self.n_frames,
                "schema_version": SCHEMA_VERSION,
                "groups": {},
                "written_by": {"host": socket.gethostname(), "pid": os.getpid(), "started": _now()},
                STATUS_ATTR: STATUS_WRITING,
            }
            self.group = zarr.create_group(
                writer.store, path=self.key, attributes=self._attrs, overwrite=True
            )
        self._existing_groups = dict(self._attrs.get("groups", {}))

    def __enter__(self) -> TrackWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None and not self._committed:
            self.commit()

    def has_group(self, name: str) -> bool:
        """True when this track holds `name` complete with the root's fingerprint."""
        entry = self._existing_groups.get(name) or self._finished.get(name)
        root = self.writer.groups.get(name)
        return bool(entry and root and entry.get("fingerprint") == root.get("fingerprint"))

    def create_array(
        self,
        name: str,
        shape: tuple[int, ...],
        dtype: str | np.dtype,
        storage: TokenStorage | None = None,
        attrs: Mapping[str, Any] | None = None,
    ) -> None:
        """Declare an array of `shape` (T first); `storage` only for patch tokens (T, h, w, D)."""
        shape = tuple(int(s) for s in shape)
        if not shape or shape[0] != self.n_frames:
            raise ValueError(
                f"track {self.track_id!r}: array {name!r} shape {shape} must start with n_frames={self.n_frames}"
            )
        if name in self._arrays:
            raise ValueError(f"track {self.track_id!r}: array {name!r} was already created")
        grp = group_of(name)
        if self.adding and (grp is None or grp in self._existing_groups):
            raise ValueError(
                f"track {self.track_id!r} is complete; group {grp or name!r} already exists in it and "
                "is not rewritten when adding groups (use overwrite=True to rewrite the track)"
            )
        in_dtype = np.dtype(dtype)
        arr_attrs = dict(attrs or {})
        if storage is not None:
            stored_shape = storage.stored_shape(shape)
            stored_dtype = np.dtype(storage.dtype)
            arr_attrs["token_storage"] = storage.to_attrs((shape[1], shape[2]))
        else:
            stored_shape, stored_dtype = shape, in_dtype
        frame_shape = stored_shape[1:]
        chunk, shard = chunk_layout(
            frame_shape,
            stored_dtype.itemsize,
            self.n_frames,
            self.writer.chunk_bytes,
            self.writer.shard_bytes,
        )
        overwrite = self.adding  # a crashed earlier attempt to add this group may have left arrays
        arr = self._make(name, stored_shape, stored_dtype, chunk, shard, arr_attrs, overwrite)
        scale = None
        if storage is not None and storage.kind == "int8":
            scale = self._make(
                scale_path(name),
                stored_shape[:3],
                np.dtype("float32"),
                chunk,
                shard,
                {"scale_of": name},
                overwrite,
            )
        self._arrays[name] = _ArrayState(arr, scale, storage, shape[1:], in_dtype, shard)

    def _make(self, name, shape, dtype, chunk, shard, attrs, overwrite):
        return self.group.create_array(
            name,
            shape=shape,
            dtype=dtype,
            chunks=(chunk, *shape[1:]),
            shards=(shard, *shape[1:]),
            compressors=_codecs(dtype),
            fill_value=False if dtype.kind == "b" else 0,
            attributes=attrs,
            overwrite=overwrite,
            config={"write_empty_chunks": True},  # every shard exists, so a missing file is a fault
        )

    def write(self, name: str, start: int, values: np.ndarray) -> None:
        """Append `values` (n, ...) at frame `start`; writes must come in order, any sizes."""
        st = self._arrays.get(name)
        if st is None:
            raise KeyError(
                f"track {self.track_id!r}: create_array({name!r}, ...) before writing it"
            )
        values = np.asarray(values)
        if start != st.pos:
            raise ValueError(
                f"track {self.track_id!r} array {name!r}: writes must be in order; expected start "
                f"{st.pos}, got {start}"
            )
        if values.shape[1:] != st.frame_shape:
            raise ValueError(
                f"track {self.track_id!r} array {name!r}: frames of shape {values.shape[1:]} given, "
                f"{st.frame_shape} declared"
            )
        n = values.shape[0]
        if st.pos + n > self.n_frames:
            raise ValueError(
                f"track {self.track_id!r} array {name!r}: frames {start}..{start + n} exceed n_frames={self.n_frames}"
            )
        if n == 0:
            return
        if st.storage is not None:
            enc, scale = st.storage.encode(values)
        else:
            enc, scale = values.astype(st.dtype, copy=False), None
        st.pieces.append((enc, scale))
        st.buffered += n
        st.pos += n
        self._flush(st, final=st.pos == self.n_frames)

    def _flush(self, st: _ArrayState, final: bool) -> None:
        while st.buffered >= st.shard_frames or (final and st.buffered > 0):
            vals = (
                np.concatenate([p[0] for p in st.pieces]) if len(st.pieces) > 1 else st.pieces[0][0]
            )
            scales = None
            if st.scale is not None:
                scales = (
                    np.concatenate([p[1] for p in st.pieces])
                    if len(st.pieces) > 1
                    else st.pieces[0][1]
                )
            take = min(st.shard_frames, st.buffered)
            a, b = st.flushed, st.flushed + take
            st.array[a:b] = vals[:take]
            if st.scale is not None:
                st.scale[a:b] = scales[:take]
            rest = vals[take:]
            st.pieces = [(rest, None if scales is None else scales[take:])] if len(rest) else []
            st.buffered -= take
            st.flushed = b

    def finish_group(self, name: str) -> None:
        """Mark group `name` complete in this track, with the root's fingerprint for it."""
        root = self.writer.groups.get(name) or self.writer.refresh_groups().get(name)
        if root is None:
            raise KeyError(
                f"group {name!r} is not registered in {self.writer.url}; call register_group first"
            )
        mine = [n for n in self._arrays if group_of(n) == name]
        if not mine:
            raise ValueError(f"track {self.track_id!r}: group {name!r} has no arrays written")
        for n in mine:
            st = self._arrays[n]
            if st.flushed != self.n_frames:
                raise ValueError(
                    f"track {self.track_id!r} array {n!r}: {st.pos} of {self.n_frames} frames written"
                )
        self._finished[name] = {"fingerprint": root["fingerprint"], "fields": root["fields"]}

    def abort(self) -> None:
        """Drop what this writer wrote (a fresh track is deleted; a reopened one keeps its old groups)."""
        if not self.adding:
            self.writer.location.delete(self.key)
        self._committed = True

    def commit(self) -> None:
        """Write the track's attrs with status = complete, last; the track is then visible."""
        for n, st in self._arrays.items():
            if st.flushed != self.n_frames:
                raise ValueError(
                    f"track {self.track_id!r} array {n!r}: {st.pos} of {self.n_frames} frames written"
                )
            grp = group_of(n)
            if grp is not None and grp not in self._finished:
                raise ValueError(
                    f"track {self.track_id!r}: call finish_group({grp!r}) before commit"
                )
        groups = {**self._existing_groups, **self._finished}
        attrs = {**self._attrs, "groups": groups, STATUS_ATTR: STATUS_COMPLETE, "completed": _now()}
        self.group.update_attributes(attrs)
        self._attrs = attrs
        self._existing_groups = groups
        self._committed = True
