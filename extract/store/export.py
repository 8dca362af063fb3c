"""Copy a store's features out of Zarr, for tools that read HDF5 or numpy: one `.h5` file, or a
folder of `.npy` files with an `attributes.json`.

Layouts (array paths are the store's, see schema.py):
- h5: `/tracks/<track>/<array path>` datasets (`/tracks/a/visual/dinov2/cls`), chunked along time
  as the store is (frame windows read few chunks), uncompressed unless `gzip` is given (fp16 and
  int8 features barely compress). Attributes: on the root the store's (fingerprint, extractor,
  models, groups), on each track group the track's, on each dataset its group's fingerprint and
  fields (model, aligned_input, ...), store dtype and token storage. Values that are not plain
  scalars (dicts, lists, None) are JSON strings.
- npy: `<out>/<track>/<array path with / as __>.npy` and `<out>/attributes.json` holding the
  same attributes (store, tracks, arrays).

int8 patch tokens are exported as stored, with their per-token scales beside them
(`<name>_scale`, (T, h, w) float32; float value = int8 * scale[..., None]) and the dataset
attribute `scale` naming that array, or as float32 with `dequantize`. `time` goes with every
track. Labels are not features: they stay in the manifest.

The output appears whole or not at all: it is built under a temporary name beside `out` and
renamed into place (shared_files.atomic_path; the umask decides the modes). A track with a
missing or damaged chunk, or without a requested array, is left out with one line; the others
are exported, and the report (and the output's attributes, `skipped`) says what was left out.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from data_manifest.shared_files import atomic_path, write_text_atomic
from data_manifest.user_error import UserError, unknown_name
from extract.store.integrity import CorruptChunk, MissingChunk
from extract.store.reader import GroupMissing, StoreReader
from extract.store.schema import TIME, TRACKS, group_of, scale_path

FORMATS = ("h5", "npy")
ATTRIBUTES_FILE = "attributes.json"  # npy layout: every attribute, in one file
EXPORT_VERSION = 1  # bump when a layout above changes
TRACK_FAILURES = (MissingChunk, CorruptChunk, GroupMissing, KeyError)  # cost one track


@dataclass
class ExportReport:
    """What export_store wrote and what it left out."""

    out: str
    format: str
    arrays: list[str]  # array paths asked for (time included)
    tracks: list[str] = field(default_factory=list)  # exported
    skipped: dict[str, str] = field(default_factory=dict)  # {track: one-line reason}
    bytes: int = 0  # feature bytes written

    @property
    def ok(self) -> bool:
        return not self.skipped


def npy_name(array_path: str) -> str:
    """`visual/dinov2/cls` -> `visual__dinov2__cls.npy` (npy layout)."""
    return array_path.replace("/", "__") + ".npy"


def format_from_path(out: str) -> str:
    """The format an output path implies: `.h5` / `.hdf5` -> h5, else npy (a folder)."""
    return "h5" if Path(out).suffix.lower() in (".h5", ".hdf5") else "npy"


def select_arrays(
    reader: StoreReader, tracks: Sequence[str], wanted: Iterable[str] | None
) -> list[str]:
    """Array paths to export: all arrays of `tracks` (None), or those named (a group name such as
    `face` or `visual/dinov2` stands for its arrays); `time` always. Unknown names: UserError."""
    known: set[str] = set()
    for tid in tracks:
        known.update(reader.arrays(tid))
    if wanted is None:
        return sorted(known | {TIME})
    groups = {group_of(a) for a in known} - {None}
    out = {TIME}
    for name in wanted:
        if name in known:
            out.add(name)
        elif name in groups:
            out.update(a for a in known if group_of(a) == name)
        else:
            raise unknown_name("array", name, known | groups)
    return sorted(out)


def export_store(
    src: str,
    out: str,
    fmt: str | None = None,
    *,
    arrays: Iterable[str] | None = None,
    tracks: Iterable[str] | None = None,
    dequantize: bool = False,
    gzip: int | None = None,
    overwrite: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    frames_per_read: int = 1024,
    progress: bool = False,
    warn: Callable[[str], None] | None = None,
) -> ExportReport:
    """Export the complete tracks of store `src` (or `tracks`) to `out` as `fmt` ("h5" or "npy";
    None: from the suffix); `arrays`: array paths or group names (None: all). `warn` gets the
    one-line reason of each track left out (default: stderr)."""
    fmt = fmt or format_from_path(out)
    if fmt not in FORMATS:
        raise UserError(f"export format {fmt!r} is not one of {', '.join(FORMATS)}")
    if gzip is not None and (fmt != "h5" or not 0 <= int(gzip) <= 9):
        raise UserError("--gzip LEVEL (0..9) is for --format h5 only")
    if "://" not in str(src) and Path(out).resolve() == Path(src).resolve():
        raise UserError(f"--out {out} is the store itself; export to another path")
    if Path(out).exists() and not overwrite:
        raise UserError(f"{out} exists; give --overwrite to replace it")
    warn = warn or (lambda line: print(line, file=sys.stderr))
    reader = StoreReader(src, storage_options=storage_options)
    complete = reader.tracks()
    report = ExportReport(out=str(out), format=fmt, arrays=[])
    chosen: list[str] = []
    for tid in complete if tracks is None else list(tracks):
        if tid in complete:
            chosen.append(tid)
        elif tid in reader.incomplete_tracks():
            report.skipped[tid] = "not complete in the store (being written, or left by a crash)"
            warn(f"skipped track {tid!r}: {report.skipped[tid]}")
        else:
            raise unknown_name("track", tid, complete)
    report.arrays = select_arrays(reader, chosen, arrays)
    root = {
        "format": "auwild-export",
        "export_version": EXPORT_VERSION,
        "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "store": reader.url,
        "store_fingerprint": reader.fingerprint,
        "schema_version": reader.attrs.get("schema_version"),
        "package_version": reader.attrs.get("package_version"),
        "extractor": reader.attrs.get("extractor", {}),
        "models": reader.attrs.get("models", {}),
        "groups": reader.groups,
        "dequantized": bool(dequantize),
    }
    sink_cls = H5Sink if fmt == "h5" else NpySink
    from tqdm.auto import tqdm

    total = sum(_nbytes(reader, tid, name) for tid in chosen for name in report.arrays)
    bar = tqdm(total=total, unit="B", unit_scale=True, desc="export", disable=not progress)
    with atomic_path(out, folder=fmt == "npy") as tmp:
        sink = sink_cls(tmp, gzip=gzip)
        tracks_meta: dict[str, dict] = {}
        for tid in chosen:
            bar.set_postfix_str(tid)
            try:
                tracks_meta[tid] = _export_track(
                    reader, sink, tid, report.arrays, dequantize, frames_per_read, bar
                )
            except TRACK_FAILURES as exc:
                sink.drop_track(tid)
                reason = str(exc).strip("\"'").splitlines()[0]
                report.skipped[tid] = reason
                warn(f"skipped track {tid!r}: {reason}")
                continue
            report.tracks.append(tid)
        bar.close()
        root["skipped"] = dict(report.skipped)
        root["arrays"] = list(report.arrays)
        report.bytes = sink.bytes
        sink.finish(root, tracks_meta)
    return report


def _nbytes(reader: StoreReader, tid: str, name: str) -> int:
    try:
        return int(np.prod(reader.shape(tid, name))) * reader.dtype(tid, name).itemsize
    except TRACK_FAILURES:
        return 0  # reported when the track is exported


def _export_track(
    reader: StoreReader,
    sink: Sink,
    tid: str,
    names: Sequence[str],
    dequantize: bool,
    frames_per_read: int,
    bar,
) -> dict:
    """Copy the arrays `names` of one track into `sink`; returns its attributes."""
    tattrs = reader.track_attrs(tid)
    entries = tattrs.get("groups", {})
    track_meta = {k: v for k, v in tattrs.items() if k not in ("groups", "status")}
    n = int(tattrs["n_frames"])
    sink.begin_track(tid, track_meta)
    arrays_meta: dict[str, dict] = {}
    for name in names:
        grp = group_of(name)
        if grp is not None and grp not in entries:
            raise GroupMissing(f"group {grp!r} is not complete in this track")
        arr = reader.array(tid, name)
        storage = reader.token_storage(tid, name)
        int8 = storage is not None and storage.kind == "int8"
        entry = entries.get(grp, {}) if grp else {}
        meta: dict[str, Any] = {"store_dtype": str(arr.dtype)}
        if grp is not None:  # `time` belongs to no group
            meta.update(
                group=grp,
                fingerprint=entry.get("fingerprint"),
                group_fingerprint=entry.get("group_fingerprint"),
                fields=entry.get("fields", {}),
                track_fields=entry.get("track_fields", {}),
            )
        if storage is not None:
            meta["token_storage"] = dict(arr.attrs.get("token_storage", {}))
        parts = [
            (name, lambda a, b, name=name: reader.read(tid, name, a, b, dequantize=dequantize))
        ]
        if int8 and not dequantize:
            meta["scale"] = scale_path(name)
            meta["dequantize"] = "float32 value = int8 value * scale[..., None]"
            parts.append(
                (scale_path(name), lambda a, b, name=name: reader.read_scale(tid, name, a, b))
            )
        chunk = int(arr.chunks[0])
        for path, read in parts:
            first = read(0, min(n, frames_per_read))
            shape = (n, *first.shape[1:])
            this = dict(meta, dtype=str(first.dtype), shape=list(shape))
            if path != name:
                this = {"scale_of": name, "dtype": str(first.dtype), "shape": list(shape)}
            sink.create(tid, path, shape, first.dtype, chunk, this)
            arrays_meta[path] = this
            for a in range(0, n, frames_per_read):
                values = first if a == 0 else read(a, a + frames_per_read)
                sink.write(tid, path, a, values)
                if path == name:
                    bar.update(reader.dtype(tid, name).itemsize * values.size)
    sink.end_track(tid)
    return {"attrs": track_meta, "arrays": arrays_meta}


class Sink:
    """Where exported arrays go: a format's layout under the temporary path `root`."""

    def __init__(self, root: Path, gzip: int | None = None):
        self.root = root
        self.gzip = gzip
        self.bytes = 0

    def begin_track(self, tid: str, attrs: dict) -> None: ...

    def create(self, tid: str, path: str, shape, dtype, chunk: int, attrs: dict) -> None: ...

    def write(self, tid: str, path: str, start: int, values: np.ndarray) -> None: ...

    def end_track(self, tid: str) -> None: ...

    def drop_track(self, tid: str) -> None: ...

    def finish(self, root_attrs: dict, tracks: dict[str, dict]) -> None: ...


def _h5_value(value: Any) -> Any:
    """A value HDF5 can hold as an attribute: scalars and strings as they are, the rest as JSON."""
    if isinstance(value, (bool, int, float, str, np.generic)):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def _h5_attrs(node, attrs: Mapping[str, Any], flatten: Sequence[str] = ()) -> None:
    """Set `attrs` on an h5py node; the scalar fields of the dicts named in `flatten` (a group's
    `fields`, `track_fields`) are also set one by one (`model`, `aligned_input`, ...)."""
    for key in flatten:
        for k, v in (attrs.get(key) or {}).items():
            if k not in attrs and v is not None and isinstance(v, (bool, int, float, str)):
                node.attrs[k] = v
    for k, v in attrs.items():
        node.attrs[k] = _h5_value(v)


class H5Sink(Sink):
    """One HDF5 file: /tracks/<track>/<array path>."""

    def __init__(self, root: Path, gzip: int | None = None):
        import h5py

        super().__init__(root, gzip)
        self.file = h5py.File(root, "w")
        self.tracks = self.file.create_group(TRACKS)

    def begin_track(self, tid: str, attrs: dict) -> None:
        _h5_attrs(self.tracks.create_group(tid), attrs)

    def create(self, tid: str, path: str, shape, dtype, chunk: int, attrs: dict) -> None:
        n = shape[0]
        opts: dict[str, Any] = {}
        if n > 0:
            opts["chunks"] = (max(1, min(n, chunk)), *shape[1:])
        if self.gzip is not None:
            opts.update(compression="gzip", compression_opts=int(self.gzip), shuffle=True)
        ds = self.tracks[tid].create_dataset(path, shape=shape, dtype=dtype, **opts)
        _h5_attrs(ds, attrs, flatten=("fields", "track_fields"))

    def write(self, tid: str, path: str, start: int, values: np.ndarray) -> None:
        self.tracks[tid][path][start : start + len(values)] = values
        self.bytes += values.nbytes

    def drop_track(self, tid: str) -> None:
        if tid in self.tracks:  # the space is not reclaimed; the file stays valid
            del self.tracks[tid]

    def finish(self, root_attrs: dict, tracks: dict[str, dict]) -> None:
        _h5_attrs(self.file, root_attrs)
        self.file.close()


class NpySink(Sink):
    """A folder: <track>/<array path with / as __>.npy and attributes.json."""

    def __init__(self, root: Path, gzip: int | None = None):
        super().__init__(root, gzip)
        self.open: dict[str, np.memmap] = {}

    def begin_track(self, tid: str, attrs: dict) -> None:
        (self.root / tid).mkdir()

    def create(self, tid: str, path: str, shape, dtype, chunk: int, attrs: dict) -> None:
        file = self.root / tid / npy_name(path)
        self.open[path] = np.lib.format.open_memmap(file, mode="w+", dtype=dtype, shape=shape)

    def write(self, tid: str, path: str, start: int, values: np.ndarray) -> None:
        self.open[path][start : start + len(values)] = values
        self.bytes += values.nbytes

    def end_track(self, tid: str) -> None:
        for mm in self.open.values():
            mm.flush()
        self.open.clear()

    def drop_track(self, tid: str) -> None:
        self.open.clear()
        shutil.rmtree(self.root / tid, ignore_errors=True)

    def finish(self, root_attrs: dict, tracks: dict[str, dict]) -> None:
        doc = {**root_attrs, "layout": "<track>/<array path with / as __>.npy", "tracks": tracks}
        write_text_atomic(
            self.root / ATTRIBUTES_FILE, json.dumps(doc, indent=2, default=str) + "\n"
        )


def format_export(report: ExportReport) -> str:
    """The summary: what was written where, and every track left out with its reason."""
    mib = report.bytes / 2**20
    lines = [
        f"{report.out}: {len(report.tracks)} tracks, {len(report.arrays)} arrays, "
        f"{mib:.1f} MiB as {report.format}"
    ]
    for tid, reason in report.skipped.items():
        lines.append(f"skipped track {tid!r}: {reason}")
    if report.skipped:
        lines.append(f"{len(report.skipped)} track(s) skipped")
    return "\n".join(lines)
