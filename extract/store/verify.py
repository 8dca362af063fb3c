"""Checking a store end to end: every complete track's arrays readable, same length, finite, in time order.

Incomplete tracks (being written, or left by a crash) are listed but are not problems: readers
never see them and the next run of the job rewrites them.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from extract.store.fingerprint import FingerprintMismatch, check_same_group
from extract.store.reader import StoreReader
from extract.store.schema import TIME, TRACKS, scale_path


@dataclass
class VerifyReport:
    """Outcome of verify_store."""

    url: str
    tracks: int = 0  # complete tracks checked
    frames: int = 0  # frames in them
    problems: list[str] = field(default_factory=list)  # "track X array Y: what is wrong"
    incomplete: list[str] = field(default_factory=list)  # track ids not complete

    @property
    def ok(self) -> bool:
        return not self.problems


def _expected_shards(arr) -> list[str]:
    """Keys (relative to the array) of every shard file the array must have."""
    meta = arr.metadata
    outer = meta.chunk_grid.chunk_shape
    counts = [-(-s // c) for s, c in zip(arr.shape, outer)]
    return [meta.encode_chunk_key(idx) for idx in itertools.product(*(range(c) for c in counts))]


def _check_array(
    reader: StoreReader, tid: str, name: str, n: int, files: Mapping[str, int], report
) -> None:
    where = f"track {tid!r} array {name!r}"
    arr = reader.array(tid, name)
    if arr.shape[0] != n:
        report.problems.append(f"{where}: {arr.shape[0]} frames, track has n_frames={n}")
        return
    base = f"{TRACKS}/{tid}/{name}/"
    missing = [k for k in _expected_shards(arr) if base + k not in files]
    if missing:
        report.problems.append(f"{where}: missing chunk file(s) {', '.join(missing[:3])}")
        return
    step = int(arr.shards[0]) if arr.shards else int(arr.chunks[0])
    last_time = -np.inf
    for a in range(0, n, step):
        b = min(n, a + step)
        try:
            block = arr[a:b]
        except Exception as exc:  # any decode failure is a finding about this file, reported
            report.problems.append(
                f"{where}: frames {a}..{b} unreadable ({type(exc).__name__}: {exc})"
            )
            return
        if block.dtype.kind == "f":
            bad = ~np.isfinite(block.reshape(len(block), -1)).all(axis=1)
            if bad.any():
                report.problems.append(
                    f"{where}: non-finite values at frame {a + int(np.argmax(bad))}"
                )
                return
        if name == TIME:
            seq = np.concatenate([[last_time], block.astype(np.float64)])
            steps = np.diff(seq)
            if (steps <= 0).any():
                i = a + int(np.argmax(steps <= 0))
                report.problems.append(f"{where}: time not increasing at frame {i}")
                return
            last_time = float(block[-1])


def verify_store(url: str, storage_options: Mapping[str, Any] | None = None) -> VerifyReport:
    """Check every complete track of the store at `url`; see VerifyReport."""
    reader = StoreReader(url, storage_options=storage_options, consolidated=False)
    report = VerifyReport(url=reader.url)
    report.incomplete = reader.incomplete_tracks()
    files = reader.location.files(TRACKS)
    root_groups = reader.groups
    for tid in reader.tracks():
        report.tracks += 1
        try:
            n = reader.n_frames(tid)
        except (KeyError, TypeError, ValueError) as exc:
            report.problems.append(f"track {tid!r}: bad n_frames attribute ({exc})")
            continue
        report.frames += n
        for grp, entry in reader.track_attrs(tid).get("groups", {}).items():
            if grp not in root_groups:
                report.problems.append(
                    f"track {tid!r}: group {grp!r} is not registered at the store root"
                )
                continue
            try:
                check_same_group(grp, root_groups[grp], entry, ("store", f"track {tid}"))
            except FingerprintMismatch as exc:
                report.problems.append(f"track {tid!r}: {exc}")
        names = reader.arrays(tid)
        if TIME not in names:
            report.problems.append(f"track {tid!r} array {TIME!r}: missing")
        for name in names:
            try:
                _check_array(reader, tid, name, n, files, report)
                if (
                    reader.token_storage(tid, name) is not None
                    and reader.token_storage(tid, name).kind == "int8"
                ):
                    _check_array(reader, tid, scale_path(name), n, files, report)
            except KeyError as exc:
                report.problems.append(f"track {tid!r} array {name!r}: {exc}")
    return report


def format_verify(report: VerifyReport) -> str:
    lines = [f"{report.url}: {report.tracks} complete tracks, {report.frames} frames checked"]
    for tid in report.incomplete:
        lines.append(f"incomplete track (not used by readers): {tid}")
    for p in report.problems:
        lines.append(f"PROBLEM {p}")
    lines.append("ok" if report.ok else f"{len(report.problems)} problem(s)")
    return "\n".join(lines)
