"""Writing a store: one root created once, then tracks written independently, each made visible last.

Concurrency model: the root metadata (schema version, group fingerprints) is written when the
store is created and when a group is registered, never per track. A track lives entirely under
`tracks/<track_id>/`; its `zarr.json` carries `status = "writing"` until every array is written,
then is replaced (atomically) with `status = "complete"`. So processes writing different tracks
touch disjoint files, and a crash leaves at most a track a reader sees as incomplete.

One writer per track: `open_track` takes the track's lease (extract/store/lease.py) before it
reads the track's status or writes anything; a live lease of another process raises TrackLeased.
The lease is dropped at commit() or abort(); a heartbeat thread keeps it alive meanwhile, and
commit() refuses (LeaseLost) when it was taken over.

Rewrites never expose zeros: a track being rewritten (overwrite, replace_groups, a crashed
earlier attempt) is first removed from the root's consolidated metadata, then from its own
`groups` attribute, and only then are its arrays deleted; a reader sees the old data, the group
missing, or an error (a missing chunk is an error, see integrity.py).

Completeness is proven against the store: before a group (finish_group) or the track (commit) is
marked complete, every array the schema requires (schema.required_arrays) is read back from the
store's metadata with its full shape and every chunk file it implies is listed.

The track's entry for a group (`attrs["groups"][name]`):

    {"group_fingerprint": root fingerprint of the group when the track was written,
     "fields": the root's fingerprint fields of the group,
     "track_fields": what happened for this track (e.g. {"aligned_input": True}), when given,
     "fingerprint": fingerprint_of({"group": fields, "track": track_fields}) with track_fields,
                    else group_fingerprint,
     "arrays": {path: {"shape": [T, ...], "dtype": stored dtype}} (scale arrays implied)}

"Already done" means `group_fingerprint` equals the root's fingerprint (see group_done);
readers and merge additionally refuse to mix tracks whose `fingerprint` differs.

Arrays are chunked along time (chunk_layout) and not sharded: each chunk is one file, sized
for training windows. The writer writes whole chunks as soon as it has them (at most
`shard_bytes` in one call), so memory stays flat on long tracks and no chunk is rewritten. Every
chunk ends with a crc32c checksum (chunk_codecs), so any read catches a flipped byte. Why not
shards: the zarrs codec pipeline (location.py) skips the checksum of a chunk it decodes only in
part, and a window read inside a shard is such a read; with one file per chunk the reader reads
whole chunks (integrity.read_checked) and every byte it returns was checked.
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
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from data_manifest.shared_files import shared_mode
from extract.store.fingerprint import (
    check_same_group,
    fingerprint_of,
    group_entry,
    group_fingerprint,
    store_fingerprint,
)
from extract.store.integrity import expected_chunk_files
from extract.store.lease import LEASE_STALE_AFTER, Lease, LeaseLost
from extract.store.location import StoreLocation, StoreNotFound
from extract.store.quantize import EncodedTokens, TokenStorage
from extract.store.schema import (
    SCALE_SUFFIX,
    SCHEMA_VERSION,
    STATUS_ATTR,
    STATUS_COMPLETE,
    STATUS_WRITING,
    TRACK_ARRAYS,
    TRACKS,
    check_track_id,
    group_of,
    required_arrays,
    scale_path,
)

log = logging.getLogger(__name__)

CHUNK_BYTES = 256 << 10  # target bytes of one chunk (small arrays: many frames per chunk)
WINDOW_FRAMES = 64  # frames of one training window
MIN_CHUNK_FRAMES = WINDOW_FRAMES // 4  # a random window touches 5 chunks: reads 1.25x its frames
SHARD_BYTES = 64 << 20  # the writer's buffer per array: whole chunks written at once
ROOT_META = "zarr.json"


class StoreVersionError(RuntimeError):
    """The store was written with another schema version than this code reads."""


class IncompleteTrack(RuntimeError):
    """An array a group or track must hold is missing, short, or lacks chunk files in the store."""


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
        why = (
            " (version 2 added chunk checksums, per-track array lists and writer leases, which "
            "older stores cannot prove)"
            if isinstance(found, int) and found < SCHEMA_VERSION
            else ""
        )
        raise StoreVersionError(
            f"{url} has store schema version {found}; this auwild ({package_version()}) reads version "
            f"{SCHEMA_VERSION}{why}. Re-extract the store, or use the auwild version that wrote it "
            f"({attrs.get('package_version', 'unknown')})."
        )


def chunk_layout(
    frame_shape: tuple[int, ...],
    itemsize: int,
    n_frames: int,
    chunk_bytes: int = CHUNK_BYTES,
    shard_bytes: int = SHARD_BYTES,
    min_chunk_frames: int = MIN_CHUNK_FRAMES,
) -> tuple[int, int]:
    """(frames per chunk, frames the writer buffers and writes at once) for an array.

    A chunk holds the largest power of two of frames that fits `chunk_bytes`, but never fewer
    than `min_chunk_frames` (a quarter of a 64-frame training window): patch tokens of any
    layout get 16-frame chunks (DINOv2-B/14 int8 pooled to 8 x 8: 786 KB; fp16 full grid:
    6.3 MB), so a random window reads 80 frames on average and opens 5 files; small arrays
    (CLS, audio, face geometry, masks) get hundreds or thousands of frames per chunk.
    """
    frame_bytes = max(1, int(np.prod(frame_shape, dtype=np.int64)) * itemsize)
    n = max(1, n_frames)
    chunk = 1 << max(0, int(np.floor(np.log2(max(1, chunk_bytes // frame_bytes)))))
    chunk = max(chunk, int(min_chunk_frames))
    if chunk >= n:
        return n, n  # one chunk
    per_write = max(1, shard_bytes // (chunk * frame_bytes))
    n_chunks = -(-n // chunk)
    return chunk, chunk * min(per_write, n_chunks)


CHECKSUMS = True  # crc32c on every chunk; False only to measure what it costs (bench_store)


def chunk_codecs(dtype: np.dtype, name: str = "") -> tuple:
    """The bytes-to-bytes codecs of the chunks of array `name` (the one place codecs are chosen).

    Compression only where it saves at least ~15 % (bench/results/storage.md, measured with
    Blosc zstd level 3 on the synthetic world's store and token-like data at DINOv2-B size):
    - bool masks (face/valid, audio/valid): Blosc zstd, bit-shuffled (saves 94 %);
    - float32 / float64 (time, face box / landmarks / align / ROIs): Blosc zstd, byte-shuffled
      (time 89 %, moving landmarks 24 %);
    - float16 and int8 (patch tokens, CLS, audio features): none — fp16 patch tokens save 8 %,
      int8 tokens 5 %: compression would cost the reader and the writer for nothing;
    - int8 token scales (`<tokens>_scale`, float32): none either. Blosc saves 26 % of them, but
      they are 0.5 % of an int8 window's bytes, and read through a codec they cost a window read
      as much as a third of its time; plain, they are read with the tokens, straight from their
      chunk files (chunk_files.py; bench/results/store_read.md).
    Every chunk then ends with a crc32c checksum, so a flipped byte anywhere fails the read.
    """
    from zarr.codecs import BloscCodec, BloscShuffle, Crc32cCodec

    dtype = np.dtype(dtype)
    codecs = []
    if name.endswith(SCALE_SUFFIX):
        pass  # read with every token window: kept plain (see above)
    elif dtype.kind == "b":
        codecs.append(BloscCodec(cname="zstd", clevel=3, shuffle=BloscShuffle.bitshuffle))
    elif dtype.kind == "f" and dtype.itemsize >= 4:
        codecs.append(BloscCodec(cname="zstd", clevel=3, shuffle=BloscShuffle.shuffle))
    if CHECKSUMS:
        codecs.append(Crc32cCodec())
    return tuple(codecs)


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
        lease_stale_after: float = LEASE_STALE_AFTER,
        min_chunk_frames: int = MIN_CHUNK_FRAMES,
    ):
        """`lease_stale_after`: seconds without a heartbeat after which another process may take
        over a track's lease (see lease.py)."""
        self.location = StoreLocation(str(url), dict(storage_options or {}))
        self.lease_stale_after = float(lease_stale_after)
        self.leases = True  # False only to measure what the lease costs (bench_store)
        self.url = self.location.url
        self.chunk_bytes = chunk_bytes  # target chunk size (see chunk_layout)
        self.shard_bytes = shard_bytes  # writer buffer per array (whole chunks written at once)
        self.min_chunk_frames = int(min_chunk_frames)  # fewest frames in a chunk (chunk_layout)
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
                os.chmod(tmp, shared_mode())  # for the team, not mkstemp's 0600
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

    def _update_root_meta(self, change: Callable[[dict], dict]) -> dict:
        """Apply `change` to the root `zarr.json` with read, write, re-read and retry.

        The root changes only when a group is registered (every process of a job does it with
        the same fields) or a track leaves the consolidated metadata; the re-read catches the rare
        lost update of two different changes.
        """
        for attempt in range(8):
            meta = self.location.read_json(ROOT_META) or {}
            new = change(json.loads(json.dumps(meta)))
            if new == meta:
                return meta
            self.location.write_json(ROOT_META, new)
            time.sleep(random.uniform(0.005, 0.03) * (attempt + 1))
            self.location.refresh()
            again = self.location.read_json(ROOT_META) or {}
            if change(json.loads(json.dumps(again))) == again:
                return again
        raise RuntimeError(
            f"could not update the root metadata of {self.url}: concurrent writers keep replacing it"
        )

    def _update_root_attrs(self, change: Callable[[dict], dict]) -> dict:
        def on_meta(meta: dict) -> dict:
            attrs = dict(meta.get("attributes", {}))
            new = change(dict(attrs))
            if new != attrs:
                meta["attributes"] = new
            return meta

        return dict(self._update_root_meta(on_meta).get("attributes", {}))

    def _drop_consolidated(self, track_id: str) -> None:
        """Remove track `track_id` (and all its nodes) from the root's consolidated metadata.

        Done before any rewrite deletes arrays, so a reader relying on consolidated metadata
        reads the track's own metadata instead (old data, or an unfinished track it skips).
        """
        key = f"{TRACKS}/{track_id}"

        def drop(meta: dict) -> dict:
            cm = meta.get("consolidated_metadata")
            nodes = (cm or {}).get("metadata") or {}
            gone = [k for k in nodes if k == key or k.startswith(key + "/")]
            for k in gone:
                del nodes[k]
            return meta

        self.location.refresh()
        after = self._update_root_meta(drop)
        self.consolidated = bool(after.get("consolidated_metadata"))

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

    def group_done(self, entry: Mapping[str, Any] | None, name: str) -> bool:
        """True when a track's group entry `entry` was made under the root's current fingerprint."""
        root = self.groups.get(name)
        return bool(entry and root and group_fingerprint(entry) == root.get("fingerprint"))

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
        replace_groups: tuple[str, ...] | list[str] = (),
    ) -> TrackWriter:
        """Take the track's lease and start writing it; see the module docstring.

        - absent or unfinished track (left by a crash, its lease stale): a fresh track, the old
          copy deleted;
        - complete and `add_groups`: reopened; groups named in `replace_groups` are removed
          (metadata first, then arrays) and may be written again, the others stay readable;
        - complete and `overwrite`: the whole track is rewritten;
        - complete otherwise: TrackExists.
        A live lease of another process raises TrackLeased (nothing touched). `row` names the
        manifest row in the error for an invalid track id.
        """
        check_track_id(track_id, row)
        replace = tuple(replace_groups or ())
        if replace and not add_groups and not overwrite:
            raise ValueError(f"track {track_id!r}: replace_groups needs add_groups=True")
        lease = None
        if self.leases:
            lease = Lease.acquire(self.location, track_id, self.lease_stale_after, self.url)
        try:
            return self._open_leased(
                track_id, n_frames, attrs, overwrite, add_groups, replace, lease
            )
        except BaseException:
            if lease is not None:
                lease.release()
            raise

    def _open_leased(self, track_id, n_frames, attrs, overwrite, add_groups, replace, lease):
        self.location.refresh()
        status = self.track_status(track_id)
        key = f"{TRACKS}/{track_id}"
        if status == STATUS_COMPLETE and add_groups and not overwrite:
            tw = TrackWriter(self, track_id, n_frames, attrs, adding=True, lease=lease)
            # readers take the track's own metadata from now on, before anything changes in it
            self._drop_consolidated(track_id)
            if replace:
                tw._remove_groups(replace)
            tw._start_heartbeat()
            return tw
        if status == STATUS_COMPLETE and not overwrite:
            raise TrackExists(
                f"track {track_id!r} is already complete in {self.url}; pass overwrite=True to rewrite "
                "it or add_groups=True to add new groups"
            )
        if n_frames is None:
            raise ValueError(f"track {track_id!r}: n_frames is needed to write a new track")
        if status is not None:
            self._drop_consolidated(track_id)  # another process may have consolidated since
        if status is not None:
            log.info("track %s in %s: removing the previous (%s) copy", track_id, self.url, status)
            if status == STATUS_COMPLETE:  # not complete any more before a single array goes
                self._mark_writing(track_id)
            self.location.delete(key)
        tw = TrackWriter(self, track_id, n_frames, attrs, adding=False, lease=lease)
        tw._start_heartbeat()
        return tw

    def _mark_writing(self, track_id: str) -> None:
        key = f"{TRACKS}/{track_id}/{ROOT_META}"
        meta = self.location.read_json(key) or {}
        meta.setdefault("attributes", {})[STATUS_ATTR] = STATUS_WRITING
        self.location.write_json(key, meta)


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
    shard_frames: int  # most frames written in one call (whole chunks)
    chunk_frames: int = 1
    pos: int = 0  # frames received
    flushed: int = 0  # frames written to the store
    pieces: list = field(default_factory=list)  # encoded (values, scale|None) not yet written
    buffered: int = 0


class TrackWriter:
    """Writes the arrays of one track; visible to readers only after commit()."""

    def __init__(
        self, writer: StoreWriter, track_id: str, n_frames, attrs, adding: bool, lease=None
    ):
        import zarr

        self.writer = writer
        self.lease: Lease | None = lease
        self.track_id = track_id
        self.key = f"{TRACKS}/{track_id}"
        self.adding = adding  # reopened complete track: only new groups may be written
        self._arrays: dict[str, _ArrayState] = {}
        self._python_arrays: dict[str, Any] = {}  # python-pipeline handles (_store_block)
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

    def _start_heartbeat(self) -> None:
        if self.lease is not None:
            self.lease.start_heartbeat()
            # a writer dropped without commit() or abort() stops refreshing its lease, which
            # then goes stale and may be taken over
            weakref.finalize(self, self.lease._stop.set)

    def _remove_groups(self, names) -> None:
        """Remove groups `names` from this reopened track: from its `groups` attribute first,
        then their arrays (a reader sees the group missing, never half of it)."""
        import zarr

        names = [n for n in names if n in self._existing_groups]
        if not names:
            return
        meta_key = f"{self.key}/{ROOT_META}"
        meta = self.writer.location.read_json(meta_key) or {}
        groups = dict(meta.get("attributes", {}).get("groups", {}))
        for n in names:
            groups.pop(n, None)
            self._existing_groups.pop(n, None)
        meta.setdefault("attributes", {})["groups"] = groups
        self.writer.location.write_json(meta_key, meta)
        self._attrs["groups"] = dict(groups)
        group = zarr.open_group(self.writer.store, path=self.key, mode="r", use_consolidated=False)
        doomed = [
            path
            for path, node in group.members(max_depth=None)
            if isinstance(node, zarr.Array) and group_of(path) in names
        ]
        for path in doomed:
            self.writer.location.delete(f"{self.key}/{path}")
        self.group = zarr.open_group(
            self.writer.store, path=self.key, mode="r+", use_consolidated=False
        )

    def __enter__(self) -> TrackWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._committed:
            return
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def has_group(self, name: str) -> bool:
        """True when this track holds `name` complete with the root's fingerprint."""
        entry = self._existing_groups.get(name) or self._finished.get(name)
        return self.writer.group_done(entry, name)

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
            self.writer.min_chunk_frames,
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
        self._arrays[name] = _ArrayState(arr, scale, storage, shape[1:], in_dtype, shard, chunk)

    def _make(self, name, shape, dtype, chunk, shard, attrs, overwrite):
        with self.writer.location.zarr_pipeline():
            return self.group.create_array(
                name,
                shape=shape,
                dtype=dtype,
                chunks=(chunk, *shape[1:]),
                compressors=chunk_codecs(dtype, name),
                fill_value=False if dtype.kind == "b" else 0,
                attributes=attrs,
                overwrite=overwrite,
                config={
                    "write_empty_chunks": True
                },  # every chunk exists: a missing file is a fault
            )

    def write(self, name: str, start: int, values: np.ndarray | EncodedTokens) -> None:
        """Append `values` (n, ...) at frame `start`; writes must come in order, any sizes.

        Patch tokens may come already encoded (EncodedTokens from an encoder that quantised or
        pooled them on its device); they must be in the array's storage and are stored as is."""
        st = self._arrays.get(name)
        if st is None:
            raise KeyError(
                f"track {self.track_id!r}: create_array({name!r}, ...) before writing it"
            )
        encoded = values if isinstance(values, EncodedTokens) else None
        if encoded is not None and encoded.storage != st.storage:
            raise ValueError(
                f"track {self.track_id!r} array {name!r}: tokens encoded as {encoded.storage}, "
                f"the array stores {st.storage}"
            )
        values = encoded if encoded is not None else np.asarray(values)
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
        if encoded is not None:
            enc, scale = encoded.values, encoded.scale
        elif st.storage is not None:
            enc, scale = st.storage.encode(values)
        else:
            enc, scale = values.astype(st.dtype, copy=False), None
        st.pieces.append((enc, scale))
        st.buffered += n
        st.pos += n
        self._flush(st, final=st.pos == self.n_frames)

    def _flush(self, st: _ArrayState, final: bool) -> None:
        """Write every whole chunk buffered (all of it at the end of the track), in one call of
        at most `shard_frames` frames: batches that end on chunk edges go out as they come,
        without being copied into a larger buffer first."""
        while st.buffered > 0:
            whole = (st.buffered // st.chunk_frames) * st.chunk_frames
            take = min(st.shard_frames, st.buffered if final else whole)
            if take == 0:
                return
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
            a, b = st.flushed, st.flushed + take
            self._store_block(st.array, a, vals[:take])
            if st.scale is not None:
                self._store_block(st.scale, a, scales[:take])
            rest = vals[take:]
            st.pieces = [(rest, None if scales is None else scales[take:])] if len(rest) else []
            st.buffered -= take
            st.flushed = b

    def _store_block(self, arr, start: int, values: np.ndarray) -> None:
        """arr[start:start + n] = values, whole chunks. zarrs (0.2) skips a chunk that holds only
        the fill value even with write_empty_chunks (its file would then be missing and the
        track could not be proven complete), so a block with such a chunk (a stretch of frames
        without a face: zeros) goes through the python pipeline."""
        if self.writer.location.pipeline == "zarrs" and _has_fill_chunk(values, arr.chunks[0]):
            arr = self._python_array(arr)
        arr[start : start + len(values)] = values

    def _python_array(self, arr):
        import zarr

        from extract.store.location import PIPELINES

        key = "python:" + arr.path
        if key not in self._python_arrays:
            with zarr.config.set({"codec_pipeline.path": PIPELINES["python"]}):
                opened = zarr.open_array(self.writer.store, path=arr.path, mode="r+")
                self._python_arrays[key] = opened.with_config({"write_empty_chunks": True})
        return self._python_arrays[key]

    def finish_group(self, name: str, track_fields: Mapping[str, Any] | None = None) -> None:
        """Mark group `name` complete in this track, after proving its arrays are in the store.

        `track_fields`: what happened for this track that changes the numbers beyond the root's
        fields (e.g. {"aligned_input": True, "detector": "whole-image"}); it makes the entry's
        track-level `fingerprint` (see the module docstring).
        """
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
        arrays = {
            n: {
                "shape": list(self._arrays[n].array.shape),
                "dtype": str(self._arrays[n].array.dtype),
            }
            for n in sorted(mine)
        }
        entry: dict[str, Any] = {
            "group_fingerprint": root["fingerprint"],
            "fields": root["fields"],
            "fingerprint": root["fingerprint"],
            "arrays": arrays,
        }
        if track_fields is not None:
            tf = canonical_fields(track_fields)
            entry["track_fields"] = tf
            entry["fingerprint"] = fingerprint_of({"group": root["fields"], "track": tf})
        self._prove(required_arrays(name, entry), f"group {name!r}")
        self._finished[name] = entry

    def _prove(self, required: Mapping[str, tuple[int, ...] | None], what: str) -> None:
        """Check against the store (not this writer's memory) that every required array exists
        with the track's full length and has every chunk file its metadata implies."""
        loc = self.writer.location
        loc.refresh()
        for path, trailing in required.items():
            where = f"track {self.track_id!r} {what} array {path!r}"
            meta = loc.read_json(f"{self.key}/{path}/{ROOT_META}")
            if meta is None or meta.get("node_type") != "array":
                raise IncompleteTrack(f"{where}: missing in {self.writer.url}")
            shape = tuple(int(s) for s in meta["shape"])
            if shape[0] != self.n_frames or (trailing is not None and shape[1:] != tuple(trailing)):
                want = (self.n_frames, *(trailing if trailing is not None else ("...",)))
                raise IncompleteTrack(f"{where}: shape {shape} in the store, expected {want}")
            present = loc.files(f"{self.key}/{path}")
            base = f"{self.key}/{path}/"
            missing = [k for k in expected_chunk_files(meta) if base + k not in present]
            if missing:
                raise IncompleteTrack(
                    f"{where}: chunk file {loc.path(base + missing[0])} is missing "
                    f"({len(missing)} of {len(expected_chunk_files(meta))})"
                )

    def _check_lease(self) -> None:
        """Raise LeaseLost (and stop: nothing is marked) when another process took the track."""
        if self.lease is None:
            return
        try:
            self.lease.check()
        except LeaseLost:
            self._committed = True
            self.lease.release()
            raise

    def abort(self) -> None:
        """Drop what this writer wrote (a fresh track is deleted; a reopened one keeps its old
        groups) and release the lease. Nothing is deleted when the lease was taken over."""
        if self._committed:
            return
        self._committed = True
        lost = self.lease is not None and (self.lease.lost or not self.lease._holds())
        try:
            if not lost:
                if not self.adding:
                    self.writer.location.delete(self.key)
                else:
                    for n in self._arrays:
                        if group_of(n) not in self._existing_groups:
                            self.writer.location.delete(f"{self.key}/{n}")
                            if self._arrays[n].scale is not None:
                                self.writer.location.delete(f"{self.key}/{scale_path(n)}")
        finally:
            if self.lease is not None:
                self.lease.release()

    def commit(self) -> None:
        """Prove the track complete, check the lease is still ours, then write status = complete
        last; the track is then visible. Raises LeaseLost (nothing marked) when taken over."""
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
        self._check_lease()
        self._prove(TRACK_ARRAYS, "track")
        for name in self._finished:
            self._prove(required_arrays(name, groups[name]), f"group {name!r}")
        self._check_lease()  # again, right before the track becomes visible
        attrs = {**self._attrs, "groups": groups, STATUS_ATTR: STATUS_COMPLETE, "completed": _now()}
        self.group.update_attributes(attrs)
        self._attrs = attrs
        self._existing_groups = groups
        self._committed = True
        if self.lease is not None:
            self.lease.release()


def _has_fill_chunk(values: np.ndarray, chunk: int) -> bool:
    """True when some chunk-sized block of `values` (from its start) is all zeros / False."""
    return any(not values[i : i + chunk].any() for i in range(0, len(values), int(chunk)))


def canonical_fields(fields: Mapping[str, Any]) -> dict:
    from extract.store.fingerprint import canonical

    return canonical(dict(fields))
