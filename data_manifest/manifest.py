"""The manifest: one parquet row per track, the only thing `extract` and `train` read about a dataset."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data_manifest.track_id import why_unsafe
from data_manifest.user_error import UserError

log = logging.getLogger(__name__)

MANIFEST_VERSION = "1"

# column -> (dtype, default, meaning). Order here is the column order on disk.
MANIFEST_SCHEMA: dict[str, tuple[str, Any, str]] = {
    "track_id": ("str", "", "one subject in one video, e.g. '10-60-1280x720_left'"),
    "video_id": ("str", "", "video stem shared by _left/_right tracks"),
    "split": ("str", "", "train | val | test"),
    "video": ("str", "", "absolute path of the video, or '' when none was found"),
    "frames_dir": ("str", "", "absolute path of cropped_aligned/<track>, or ''"),
    "side": ("str", "none", "left | right | none"),
    "labels": ("str", "", "absolute path of the ABAW annotation file, or ''"),
    "n_annotated": ("int64", 0, "frames with any label != -1"),
    "n_valid": ("int64", -1, "frames with a face image in frames_dir, -1 unknown"),
    "fps": ("float64", float("nan"), "video frame rate, NaN unknown"),
    "n_frames": ("int64", -1, "video frame count, -1 unknown"),
    "status": ("str", "ok", "ok | missing_video | bad_labels | missing_labels | ..."),
    "error": ("str", "", "what went wrong for a status other than ok"),
}
MANIFEST_COLUMNS: tuple[str, ...] = tuple(MANIFEST_SCHEMA)
SPLITS: tuple[str, ...] = ("train", "val", "test")
SIDES: tuple[str, ...] = ("left", "right", "none")


class ManifestError(UserError):
    """A manifest file that cannot be read or does not follow the schema."""


def make_manifest(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Rows (dicts, missing keys take their defaults) -> a manifest frame with the schema's dtypes."""
    records = [
        {col: row.get(col, spec[1]) for col, spec in MANIFEST_SCHEMA.items()} for row in rows
    ]
    df = pd.DataFrame.from_records(records, columns=list(MANIFEST_COLUMNS))
    return normalize_manifest(df)


def normalize_manifest(df: pd.DataFrame, source: str = "manifest") -> pd.DataFrame:
    """Check the columns and values, fill defaults, cast dtypes, order columns (extra columns kept last)."""
    df = df.copy()
    missing = [c for c in ("track_id", "split") if c not in df.columns]
    if missing:
        raise ManifestError(f"{source}: missing required column(s) {missing}")
    for col, (dtype, default, _) in MANIFEST_SCHEMA.items():
        if col not in df.columns:
            df[col] = default
        if dtype == "str":
            df[col] = df[col].fillna(default).astype(str)
        elif dtype == "int64":
            df[col] = pd.to_numeric(df[col], errors="coerce").fillna(default).astype("int64")
        else:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    if (df["video_id"] == "").any():
        fill = df["video"].map(lambda p: Path(p).stem if p else "")
        df.loc[df["video_id"] == "", "video_id"] = fill[df["video_id"] == ""]
    bad_split = df.loc[~df["split"].isin(SPLITS), ["track_id", "split"]]
    if len(bad_split):
        tid, split = bad_split.iloc[0]
        raise ManifestError(
            f"{source}: track {tid!r} has split {split!r}, expected one of {SPLITS}"
        )
    bad_side = df.loc[~df["side"].isin(SIDES), ["track_id", "side"]]
    if len(bad_side):
        tid, side = bad_side.iloc[0]
        raise ManifestError(f"{source}: track {tid!r} has side {side!r}, expected one of {SIDES}")
    dup = df["track_id"][df["track_id"].duplicated()]
    if len(dup):
        raise ManifestError(f"{source}: track_id {dup.iloc[0]!r} appears more than once")
    extra = [c for c in df.columns if c not in MANIFEST_SCHEMA]
    return df[list(MANIFEST_COLUMNS) + extra].reset_index(drop=True)


def usable_rows(manifest: pd.DataFrame, what: str | None = None) -> pd.DataFrame:
    """The rows a job can use: status `ok` (a table without a status column: every row).

    The one rule shared by extraction, training, prediction and the manifest commands; the
    index is kept, so `manifest.drop(usable_rows(manifest).index)` are the others. With `what`
    (e.g. the split), the rows left out are logged, named with their status.
    """
    if "status" not in manifest.columns:
        return manifest
    status = manifest["status"].fillna("ok").astype(str).replace("", "ok")
    usable = manifest[status == "ok"]
    if what is not None and len(usable) < len(manifest):
        left = manifest[status != "ok"]
        named = ", ".join(
            f"{t} ({s})" for t, s in zip(left["track_id"][:5], status[left.index][:5])
        )
        more = f" and {len(left) - 5} more" if len(left) > 5 else ""
        log.warning(
            "%s: skipping %d track(s) whose manifest status is not ok: %s%s",
            what,
            len(left),
            named,
            more,
        )
    return usable


def unusable_reason(row: Mapping[str, Any]) -> str:
    """Why `usable_rows` leaves this row out ("status missing_video: ..."), or "" when it is usable."""
    status = str(row.get("status", "ok") or "ok")
    if status == "ok":
        return ""
    error = str(row.get("error", "") or "")
    return f"status {status}" + (f": {error}" if error else "")


def write_manifest(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Validate the schema and write parquet (atomically: a temporary file renamed into place)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    df = normalize_manifest(df, source=str(path))
    check_track_ids(df, source=str(path))
    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[b"auwild_manifest_version"] = MANIFEST_VERSION.encode()
    table = table.replace_schema_metadata(meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def check_track_ids(df: pd.DataFrame, source: str = "manifest") -> None:
    """Refuse ids that cannot be store paths, naming every such row (1-based) and why.

    Checked when a manifest is written, not when it is read: a manifest written before the rule
    still opens, and the extraction job then fails those rows one by one.
    """
    bad = []
    for i, tid in enumerate(df["track_id"]):
        reason = why_unsafe(str(tid))
        if reason:
            bad.append(f"row {i + 1} track_id {tid!r}: {reason}")
    if bad:
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise ManifestError(
            f"{source}: track ids that cannot be store paths: " + "; ".join(bad[:5]) + more
        )


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Read a manifest parquet file; raises ManifestError naming the file when it is not one."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise ManifestError(f"{path}: not a readable parquet file ({exc})") from exc
    version = (table.schema.metadata or {}).get(b"auwild_manifest_version", b"").decode()
    if version and version != MANIFEST_VERSION:
        raise ManifestError(
            f"{path}: manifest version {version}, this code reads {MANIFEST_VERSION}"
        )
    return normalize_manifest(table.to_pandas(), source=str(path))


def split_counts(df: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Tracks and known video frames per split: {split: {"tracks": n, "frames": n}}."""
    out = {}
    for split in SPLITS:
        part = df[df["split"] == split]
        frames = part["n_frames"].to_numpy(np.int64)
        out[split] = {"tracks": int(len(part)), "frames": int(frames[frames > 0].sum())}
    return out
