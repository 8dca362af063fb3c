"""What a job will do, decided before any model is loaded or any source decoded.

`plan` is a pure function of the manifest, the store's track metadata (StoreState), the
fingerprints of the groups the job writes, the shard and the --tracks filter; the only I/O it
leaves to its caller is signing sources (`signature`). Everything it does not extract is said:
rows skipped for their manifest status, ids unknown to the manifest, ids that cannot be store
paths, and complete tracks whose sources changed since they were written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from data_manifest.manifest import unusable_reason, usable_rows
from data_manifest.source_signature import signature_change, source_signature
from data_manifest.track_id import why_unsafe
from extract.job.shard import Shard


@dataclass
class TrackPlan:
    """What one track needs."""

    track_id: str
    row: dict[str, Any]  # the manifest row
    groups: list[str]  # array groups to compute
    reason: str  # new | resume | add | overwrite | changed | skip
    n_frames: int  # estimated frames (for the progress bar)
    replace: list[str] = field(default_factory=list)  # groups of a complete track rewritten
    dropped: list[str] = field(default_factory=list)  # groups lost by a whole rewrite
    signature: dict[str, Any] = field(default_factory=dict)  # the sources, by content
    row_number: int = 0  # 1-based manifest row, for messages
    change: str = ""  # what changed in the sources of a complete track

    @property
    def reopens(self) -> bool:
        """True when the track stays and only some of its groups are (re)written."""
        return self.reason in ("add", "overwrite")


@dataclass
class SkippedRow:
    row_number: int  # 1-based
    track_id: str
    why: str  # "status missing_video: ...", "track id cannot be a store path: ..."


@dataclass
class Plan:
    tracks: list[TrackPlan] = field(default_factory=list)
    skipped_rows: list[SkippedRow] = field(default_factory=list)  # manifest status not ok
    bad_ids: list[SkippedRow] = field(default_factory=list)  # ids that cannot be store paths
    unknown: list[str] = field(default_factory=list)  # --tracks ids not in the manifest
    changed: list[TrackPlan] = field(default_factory=list)  # content changed, no --overwrite

    @property
    def todo(self) -> list[TrackPlan]:
        return [p for p in self.tracks if p.reason != "skip"]

    @property
    def complete(self) -> list[TrackPlan]:
        return [p for p in self.tracks if p.reason == "skip"]


@dataclass
class StoreState:
    """The store's track metadata: complete tracks' attrs and ids of unfinished tracks."""

    complete: dict[str, dict[str, Any]] = field(default_factory=dict)
    unfinished: set[str] = field(default_factory=set)

    @classmethod
    def read(cls, store: str) -> StoreState:
        from extract.store import StoreNotFound, StoreReader

        try:
            reader = StoreReader(store, consolidated=False)  # the truth, not a snapshot
        except StoreNotFound:
            return cls()
        complete = {tid: reader.track_attrs(tid) for tid in reader.tracks()}
        return cls(complete, set(reader.incomplete_tracks()))


def track_group_fingerprint(entry: dict[str, Any]) -> str | None:
    """The root fingerprint a track's group entry was written under."""
    return entry.get("group_fingerprint", entry.get("fingerprint"))


def plan(
    manifest: pd.DataFrame,
    state: StoreState,
    fingerprints: dict[str, str],
    shard: Shard,
    only: set[str] | None = None,
    *,
    overwrite: bool = False,
    signature: Callable[[dict[str, Any]], dict[str, Any]] = source_signature,
) -> Plan:
    """Decide, per manifest row of this shard, which groups to compute and why.

    `fingerprints` are {group: fingerprint} of the groups named on the command line. With
    `overwrite`, complete tracks rewrite exactly those groups and keep the others; a track whose
    sources changed is rewritten whole (its other groups are listed in `dropped`), and without
    `overwrite` such tracks land in `changed` and the caller stops before extracting anything.
    """
    out = Plan()
    wanted = list(fingerprints)
    ids = [str(t) for t in manifest["track_id"]] if "track_id" in manifest else []
    if only is not None:
        out.unknown = sorted(set(only) - set(ids))
    usable = set(usable_rows(manifest)["track_id"].astype(str)) if ids else set()
    for i, row in enumerate(manifest.to_dict("records")):
        tid = str(row["track_id"])
        number = i + 1
        if only is not None and tid not in only:
            continue
        if not shard.owns(tid):
            continue
        if tid not in usable:
            out.skipped_rows.append(SkippedRow(number, tid, unusable_reason(row)))
            continue
        unsafe = why_unsafe(tid)
        if unsafe:
            out.bad_ids.append(
                SkippedRow(number, tid, f"track id cannot be a store path: {unsafe}")
            )
            continue
        est = max(0, int(row.get("n_frames", -1) or -1))
        sig = signature(row)
        base = {"row": row, "signature": sig, "row_number": number}
        attrs = state.complete.get(tid)
        if attrs is None:
            reason = "resume" if tid in state.unfinished else "new"
            out.tracks.append(
                TrackPlan(tid, groups=list(wanted), reason=reason, n_frames=est, **base)
            )
            continue
        have = {g: track_group_fingerprint(e) for g, e in (attrs.get("groups") or {}).items()}
        n_stored = int(attrs.get("n_frames", est))
        change = signature_change(attrs.get("source_signature"), sig)
        if change:
            dropped = sorted(g for g in have if g not in wanted)
            p = TrackPlan(
                tid, groups=list(wanted), reason="changed", n_frames=est, dropped=dropped, **base
            )
            p.change = change
            (out.tracks if overwrite else out.changed).append(p)
            continue
        if overwrite:
            replace = [g for g in wanted if g in have]
            out.tracks.append(
                TrackPlan(
                    tid,
                    groups=list(wanted),
                    reason="overwrite",
                    n_frames=n_stored,
                    replace=replace,
                    **base,
                )
            )
            continue
        missing = [g for g in wanted if have.get(g) != fingerprints[g]]
        if missing:
            replace = [g for g in missing if g in have]  # written under other settings
            out.tracks.append(
                TrackPlan(
                    tid, groups=missing, reason="add", n_frames=n_stored, replace=replace, **base
                )
            )
        else:
            out.tracks.append(TrackPlan(tid, groups=[], reason="skip", n_frames=0, **base))
    return out
