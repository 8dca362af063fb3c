"""A manifest from a plain table, for datasets that are not laid out like Aff-Wild2.

The table has the header `track_id,video,split` and optionally `labels` (an ABAW-format
annotation file), `frames_dir` and `side`. Relative paths are taken from the table's folder.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pandas as pd

from data_manifest.manifest import SIDES, SPLITS, make_manifest
from data_manifest.track_id import why_unsafe
from data_manifest.track_row import TrackRow
from data_manifest.user_error import UserError
from data_manifest.video_probe import VideoProbeError, probe_counts

REQUIRED = ("track_id", "video", "split")
OPTIONAL = ("labels", "frames_dir", "side")
SPLIT_ALIASES = {"validation": "val", "valid": "val", "training": "train"}


def _resolve(base: Path, value: str) -> str:
    if not value:
        return ""
    p = Path(value).expanduser()
    return str((p if p.is_absolute() else base / p).resolve())


def build_csv_manifest(table: str | os.PathLike, probe: bool = True) -> pd.DataFrame:
    """Rows of `table` -> manifest; a malformed table is a UserError naming the file and line."""
    table = Path(table)
    if not table.is_file():
        raise UserError(f"{table}: table not found")
    base = table.resolve().parent
    with table.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise UserError(f"{table}:1: header {header} lacks {missing}; needs {list(REQUIRED)}")
        unknown = [c for c in header if c not in REQUIRED + OPTIONAL]
        if unknown:
            raise UserError(
                f"{table}:1: unknown column(s) {unknown}; allowed {list(REQUIRED + OPTIONAL)}"
            )
        rows, seen = [], {}
        for lineno, raw in enumerate(reader, start=2):
            rec = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
            tid = rec["track_id"]
            if not tid:
                raise UserError(f"{table}:{lineno}: empty track_id")
            reason = why_unsafe(tid)
            if reason:
                raise UserError(
                    f"{table}:{lineno}: track_id {tid!r} cannot be a store path: {reason}"
                )
            if tid in seen:
                raise UserError(f"{table}:{lineno}: track_id {tid!r} already on line {seen[tid]}")
            seen[tid] = lineno
            split = SPLIT_ALIASES.get(rec["split"].lower(), rec["split"].lower())
            if split not in SPLITS:
                raise UserError(
                    f"{table}:{lineno}: split {rec['split']!r}, expected one of {SPLITS}"
                )
            side = (rec.get("side") or "none").lower()
            if side not in SIDES:
                raise UserError(f"{table}:{lineno}: side {rec['side']!r}, expected one of {SIDES}")
            rows.append(_row(rec, tid, split, side, base, probe))
    return make_manifest(rows)


def _row(rec: dict, tid: str, split: str, side: str, base: Path, probe: bool) -> dict:
    video = _resolve(base, rec["video"])
    row = TrackRow(
        tid,
        Path(video).stem if video else tid,
        split,
        side,
        labels=_resolve(base, rec.get("labels", "")),
        video=video,
        frames_dir=_resolve(base, rec.get("frames_dir", "")),
    )
    row.count_annotated()
    if not video or not Path(video).is_file():
        row.problem("missing_video", f"video not found: {video or '(empty)'}")
    elif probe:
        try:
            counts = probe_counts(video)
            row.fps, row.n_frames = counts.fps, counts.n_frames
        except VideoProbeError as exc:
            row.problem("bad_video", str(exc))
    return row.as_dict()
