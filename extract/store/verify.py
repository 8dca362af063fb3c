"""Checking a store end to end: every complete group of every complete track holds every array the
schema requires, with the track's length, every chunk file, every chunk decoding (so every
checksum is checked) and finite values; time in order.

Incomplete tracks (being written, or left by a crash) and unreleased leases are reported but are
not problems: readers never see those tracks and the next run of the job rewrites them. Each
problem is one line naming track, array and file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from extract.store.fingerprint import (
    FingerprintMismatch,
    check_same_group,
    check_same_track_entry,
)
from extract.store.integrity import CHUNK_DIR, expected_chunk_files, first_line
from extract.store.lease import lease_states
from extract.store.reader import StoreReader
from extract.store.schema import TIME, TRACKS, group_of, required_arrays


@dataclass
class Problem:
    """One thing wrong with one array (or track) of a store."""

    track: str
    array: str  # "" for the track as a whole
    file: str  # the file or folder at fault (path or URL)
    message: str

    def __str__(self) -> str:
        what = f"track {self.track!r}" + (f" array {self.array!r}" if self.array else "")
        return f"{what}: {self.message} [{self.file}]"


@dataclass
class VerifyReport:
    """Outcome of verify_store."""

    url: str
    tracks: int = 0  # complete tracks checked
    frames: int = 0  # frames in them
    issues: list[Problem] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)  # track ids not complete
    leases: dict[str, dict] = field(default_factory=dict)  # {track: holder, state, reason}
    notes: list[str] = field(default_factory=list)  # not problems, worth saying

    @property
    def ok(self) -> bool:
        return not self.issues

    @property
    def problems(self) -> list[str]:
        """One line per problem: `track 'X' array 'Y': what is wrong [file]`."""
        return [str(p) for p in self.issues]

    def to_json(self) -> dict:
        return {
            "url": self.url,
            "ok": self.ok,
            "tracks": self.tracks,
            "frames": self.frames,
            "problems": [asdict(p) for p in self.issues],
            "incomplete": list(self.incomplete),
            "leases": self.leases,
            "notes": list(self.notes),
        }


def _check_array(reader: StoreReader, tid: str, name: str, n: int, trailing, files, report) -> None:
    loc = reader.location
    folder = loc.path(f"{TRACKS}/{tid}/{name}")

    def problem(message: str, file: str = folder) -> None:
        report.issues.append(Problem(tid, name, file, message))

    arr = reader._all_arrays(tid)[name]
    if arr.shape[0] != n:
        return problem(f"{arr.shape[0]} frames, track has n_frames={n}")
    if trailing is not None and tuple(arr.shape[1:]) != tuple(trailing):
        return problem(f"shape {tuple(arr.shape)}, expected {(n, *trailing)}")
    base = f"{TRACKS}/{tid}/{name}/"
    expected = expected_chunk_files(arr.metadata.to_dict())
    missing = [k for k in expected if base + k not in files]
    if missing:
        more = f" ({len(missing)} of {len(expected)} missing)" if len(missing) > 1 else ""
        return problem(f"chunk file missing{more}", loc.path(base + missing[0]))
    step = int(arr.shards[0]) if arr.shards else int(arr.chunks[0])
    last_time = -np.inf
    for a in range(0, n, step):
        b = min(n, a + step)
        shard = loc.path(
            base + f"{CHUNK_DIR}/" + "/".join([str(a // step)] + ["0"] * (arr.ndim - 1))
        )
        try:
            block = arr[a:b]
        except Exception as exc:  # any decode failure is a finding about this file, reported
            return problem(f"frames {a}..{b} unreadable ({first_line(exc)})", shard)
        if block.dtype.kind == "f":
            bad = ~np.isfinite(block.reshape(len(block), -1)).all(axis=1)
            if bad.any():
                return problem(f"non-finite values at frame {a + int(np.argmax(bad))}", shard)
        if name == TIME:
            steps = np.diff(np.concatenate([[last_time], block.astype(np.float64)]))
            if (steps <= 0).any():
                return problem(
                    f"time not increasing at frame {a + int(np.argmax(steps <= 0))}", shard
                )
            last_time = float(block[-1])


def verify_store(url: str, storage_options: Mapping[str, Any] | None = None) -> VerifyReport:
    """Check every complete track of the store at `url`; see VerifyReport."""
    reader = StoreReader(url, storage_options=storage_options, consolidated=False)
    report = VerifyReport(url=reader.url)
    report.incomplete = reader.incomplete_tracks()
    report.leases = lease_states(reader.location)
    files = reader.location.files(TRACKS)
    root_groups = reader.groups
    first_entry: dict[str, tuple[str, dict]] = {}
    for tid in reader.tracks():
        report.tracks += 1
        track_file = reader.location.path(f"{TRACKS}/{tid}/zarr.json")
        try:
            n = reader.n_frames(tid)
        except (KeyError, TypeError, ValueError) as exc:
            report.issues.append(Problem(tid, "", track_file, f"bad n_frames attribute ({exc})"))
            continue
        report.frames += n
        groups = reader.track_attrs(tid).get("groups", {})
        required: dict[str, tuple | None] = {TIME: ()}
        for grp, entry in groups.items():
            if grp not in root_groups:
                report.issues.append(
                    Problem(
                        tid, "", track_file, f"group {grp!r} is not registered at the store root"
                    )
                )
                continue
            try:
                check_same_group(grp, root_groups[grp], entry, ("store", f"track {tid}"))
            except FingerprintMismatch as exc:
                report.issues.append(Problem(tid, "", track_file, str(exc)))
            ref_tid, ref = first_entry.setdefault(grp, (tid, entry))
            try:
                check_same_track_entry(grp, ref, entry, (f"track {ref_tid}", f"track {tid}"))
            except FingerprintMismatch as exc:
                report.notes.append(
                    f"tracks differ in per-track fields (readers refuse to mix them): {exc}"
                )
            required.update(required_arrays(grp, entry))
        present = reader._all_arrays(tid)
        names = set(required) | {p for p in present if group_of(p) is None or group_of(p) in groups}
        for name in sorted(names):
            if name not in present:
                grp = group_of(name)
                why = f"group {grp!r} is complete" if grp else "every track has it"
                report.issues.append(
                    Problem(
                        tid,
                        name,
                        reader.location.path(f"{TRACKS}/{tid}/{name}"),
                        f"missing although {why}",
                    )
                )
                continue
            _check_array(reader, tid, name, n, required.get(name), files, report)
    for tid, info in report.leases.items():
        if info["state"] == "stale":
            report.notes.append(
                f"track {tid!r}: stale lease of pid {info.get('pid')} on {info.get('host')} "
                f"({info.get('reason')}); the next writer takes it over"
            )
    return report


def format_verify(report: VerifyReport) -> str:
    lines = [f"{report.url}: {report.tracks} complete tracks, {report.frames} frames checked"]
    for tid in report.incomplete:
        lines.append(f"incomplete track (not used by readers): {tid}")
    for tid, info in report.leases.items():
        lines.append(
            f"lease {info['state']}: track {tid} held by pid {info.get('pid')} on "
            f"{info.get('host')} since {info.get('started')}"
        )
    for note in report.notes:
        lines.append(f"note: {note}")
    for p in report.problems:
        lines.append(f"PROBLEM {p}")
    lines.append("ok" if report.ok else f"{len(report.problems)} problem(s)")
    return "\n".join(lines)


def format_verify_json(report: VerifyReport) -> str:
    return json.dumps(report.to_json(), indent=2)
