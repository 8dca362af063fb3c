"""Combining stores written on different machines into one, file by file.

Group fingerprints must agree (the same name, the same fields), and so must the per-track fields
the tracks' group entries record (full frames vs aligned crops, detector), or nothing is copied:
a store from full frames and one from aligned crops share group fingerprints but not numbers.
Each track
is copied whole, its `zarr.json` (with status = complete) last, so a merge interrupted midway
leaves only incomplete tracks behind and can simply be run again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from extract.store.fingerprint import check_same_group, check_same_track_entry
from extract.store.location import StoreNotFound
from extract.store.reader import StoreReader
from extract.store.schema import TRACKS
from extract.store.writer import ROOT_META, StoreWriter


class MergeConflict(ValueError):
    """The same track is complete in two of the stores being merged."""


@dataclass
class MergeReport:
    """What merge_stores did."""

    out: str
    copied: list[str] = field(default_factory=list)  # track ids copied
    skipped: list[str] = field(default_factory=list)  # already complete in the output


def merge_stores(
    sources: Sequence[str],
    out: str,
    storage_options: Mapping[str, Any] | None = None,
) -> MergeReport:
    """Copy the complete tracks of `sources` into `out` (created if absent, else added to).

    Raises FingerprintMismatch naming the differing fields when a group differs between stores,
    MergeConflict when one track id is complete in two sources.
    """
    opts = dict(storage_options or {})
    readers = [StoreReader(s, storage_options=opts, consolidated=False) for s in sources]
    try:
        existing = StoreReader(out, storage_options=opts, consolidated=False)
    except StoreNotFound:
        existing = None
    # Check everything before writing anything.
    combined: dict[str, dict] = dict(existing.groups) if existing else {}
    origin = {name: out for name in combined}
    for r in readers:
        for name, entry in r.groups.items():
            if name in combined:
                check_same_group(name, combined[name], entry, (origin[name], r.url))
            else:
                combined[name], origin[name] = entry, r.url
    seen: dict[str, tuple[str, dict]] = {}  # group -> (where, first track entry)
    for r in ([existing] if existing else []) + readers:
        for tid in r.tracks():
            for name, entry in r.track_attrs(tid).get("groups", {}).items():
                where, ref = seen.setdefault(name, (f"{r.url} track {tid}", entry))
                check_same_track_entry(name, ref, entry, (where, f"{r.url} track {tid}"))
    owner: dict[str, str] = {}
    for r in readers:
        for tid in r.tracks():
            if tid in owner:
                raise MergeConflict(f"track {tid!r} is complete in both {owner[tid]} and {r.url}")
            owner[tid] = r.url
    first = readers[0].attrs if readers else {}
    writer = StoreWriter(
        out,
        create=True,
        extractor_config=None if existing else first.get("extractor", {}),
        models=None if existing else first.get("models", {}),
        storage_options=opts,
    )
    for name, entry in combined.items():
        writer.register_group(name, entry["fields"])
    report = MergeReport(out=writer.url)
    for r in readers:
        for tid in r.tracks():
            if writer.track_status(tid) == "complete":
                report.skipped.append(tid)
                continue
            _copy_track(r, writer, tid)
            report.copied.append(tid)
    return report


def _copy_track(reader: StoreReader, writer: StoreWriter, tid: str) -> None:
    key = f"{TRACKS}/{tid}"
    writer.location.delete(key)
    files = reader.location.files(key)
    meta = f"{key}/{ROOT_META}"
    for name in sorted(files):
        if name != meta:
            writer.location.write_bytes(name, reader.location.read_bytes(name))
    writer.location.write_bytes(meta, reader.location.read_bytes(meta))  # status = complete, last


def format_merge(report: MergeReport) -> str:
    return (
        f"{report.out}: {len(report.copied)} track(s) copied, {len(report.skipped)} already there"
    )
