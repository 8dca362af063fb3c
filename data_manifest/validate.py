"""Checking a manifest against the files it names, and summarising what it holds.

Every problem names a file (and a line where there is one): missing videos and image
folders, annotation files that do not parse, annotations whose length differs from the
video's frame count (by the rule in `labels`), images numbered past the video's end.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from data_manifest.annotations import AnnotationError, parse_annotation_file
from data_manifest.aus import AUS, N_AUS
from data_manifest.frames_dir import frame_numbers
from data_manifest.labels import length_note
from data_manifest.manifest import SPLITS
from data_manifest.track_id import why_unsafe
from data_manifest.video_probe import VideoProbeError, probe_counts


@dataclass(frozen=True)
class Problem:
    """One thing wrong, with the file (and 1-based line, 0 = none) where it is."""

    file: str  # the file at fault
    line: int  # 1-based line in that file, 0 when no line applies
    track_id: str  # the manifest track it belongs to
    message: str  # what is wrong

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line > 0 else self.file
        return f"{where}: [{self.track_id}] {self.message}"


@dataclass
class SplitSummary:
    """Totals of one split."""

    tracks: int = 0  # manifest rows
    frames: int = 0  # video frames (annotation lines where the video is unknown)
    valid_frames: int = 0  # frames with a face image
    annotated_frames: int = 0  # frames with any label != -1
    positives: np.ndarray = field(default_factory=lambda: np.zeros(N_AUS, np.int64))  # (12,)
    known: np.ndarray = field(default_factory=lambda: np.zeros(N_AUS, np.int64))  # (12,)

    def positive_rate(self) -> dict[str, float]:
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = self.positives / self.known
        return {au: float(r) for au, r in zip(AUS, rate)}

    def as_dict(self) -> dict:
        return {
            "tracks": self.tracks,
            "frames": self.frames,
            "valid_frames": self.valid_frames,
            "annotated_frames": self.annotated_frames,
            "positive_rate": self.positive_rate(),
        }


@dataclass
class ValidationReport:
    """Problems (make the check fail), warnings (reported only) and per-split totals."""

    manifest: str  # the manifest checked
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    splits: dict[str, SplitSummary] = field(
        default_factory=lambda: {s: SplitSummary() for s in SPLITS}
    )

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> dict:
        return {split: s.as_dict() for split, s in self.splits.items()}

    def format_summary(self) -> str:
        lines = [f"manifest {self.manifest}"]
        lines.append(f"{'split':<6} {'tracks':>6} {'frames':>9} {'faces':>9} {'annotated':>9}")
        for split, s in self.splits.items():
            lines.append(
                f"{split:<6} {s.tracks:>6} {s.frames:>9} {s.valid_frames:>9} {s.annotated_frames:>9}"
            )
        labelled = [s for split, s in self.splits.items() if split != "test"]
        pos = sum(s.positives for s in labelled)
        known = sum(s.known for s in labelled)
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = pos / known
        lines.append("positive rate per AU (train+val annotated frames):")
        lines.append("  " + "  ".join(f"{au}={r:.3f}" for au, r in zip(AUS, rate)))
        lines.append(f"{len(self.problems)} problem(s), {len(self.warnings)} warning(s)")
        return "\n".join(lines)


def _check_row(
    row: pd.Series,
    lineno: int,
    manifest: str,
    report: ValidationReport,
    tolerate_length: int,
    exact: bool,
) -> None:
    tid = str(row["track_id"])
    n_before = len(report.problems)
    split = report.splits[row["split"]]
    split.tracks += 1

    def problem(file: str, line: int, message: str) -> None:
        report.problems.append(Problem(file, line, tid, message))

    unsafe = why_unsafe(tid)
    if unsafe:  # extraction would fail this row: say so now, naming the row
        problem(manifest, lineno, f"track id cannot be a store path: {unsafe}")

    # Video: present and readable; its frame count is the reference length.
    n_frames = -1
    video = str(row["video"])
    if not video:
        problem(
            manifest,
            lineno,
            f"no video ({row['status']}: {row['error']})" if row["error"] else "no video",
        )
    elif not Path(video).is_file():
        problem(video, 0, "video not found")
    else:
        try:
            n_frames = probe_counts(video, exact=exact).n_frames
        except VideoProbeError as exc:
            problem(video, 0, str(exc))
        if n_frames > 0 and int(row["n_frames"]) > 0 and int(row["n_frames"]) != n_frames:
            problem(
                manifest, lineno, f"manifest says {row['n_frames']} frames, {video} has {n_frames}"
            )

    # Face images: folder present, numbers within the video.
    frames_dir = str(row["frames_dir"])
    if frames_dir:
        if not Path(frames_dir).is_dir():
            problem(frames_dir, 0, "frames folder not found")
        else:
            numbers = frame_numbers(frames_dir)
            split.valid_frames += len(numbers)
            if int(row["n_valid"]) >= 0 and int(row["n_valid"]) != len(numbers):
                problem(
                    manifest,
                    lineno,
                    f"manifest says {row['n_valid']} face images, {frames_dir} has {len(numbers)}",
                )
            if n_frames > 0 and len(numbers) and numbers[-1] > n_frames:
                problem(
                    frames_dir, 0, f"image {numbers[-1]:05d} is past the video's {n_frames} frames"
                )

    # Labels: parse, compare the length with the video.
    labels_path = str(row["labels"])
    n_lines = -1
    if labels_path:
        try:
            ann = parse_annotation_file(labels_path)  # (N, 12)
        except AnnotationError as exc:
            problem(exc.path, exc.line, exc.message)
            ann = None
        if ann is not None:
            n_lines = len(ann)
            if n_frames > 0 and n_lines != n_frames:
                note = length_note(labels_path, n_lines, n_frames).split(": ", 1)[1]
                line = n_frames + 2 if n_lines > n_frames else n_lines + 1
                target = (
                    report.warnings
                    if abs(n_lines - n_frames) <= tolerate_length
                    else report.problems
                )
                target.append(Problem(labels_path, line, tid, note))
            keep = ann[:n_frames] if n_frames > 0 else ann
            annotated = (keep != -1).any(1)
            split.annotated_frames += int(annotated.sum())
            split.positives += (keep == 1).sum(0)
            split.known += (keep != -1).sum(0)
            if int(row["n_annotated"]) != int((ann != -1).any(1).sum()):
                problem(
                    manifest,
                    lineno,
                    f"manifest says {row['n_annotated']} annotated frames, {labels_path} has {int((ann != -1).any(1).sum())}",
                )
    elif row["split"] != "test":
        problem(manifest, lineno, f"{row['split']} track without a labels file")
    split.frames += n_frames if n_frames > 0 else max(n_lines, 0)

    if row["status"] != "ok" and len(report.problems) == n_before:
        problem(manifest, lineno, f"status {row['status']}: {row['error']}")


def validate_manifest(
    df: pd.DataFrame,
    manifest: str | os.PathLike = "manifest",
    tolerate_length: int = 0,
    exact: bool = True,
) -> ValidationReport:
    """Check every row; `tolerate_length` lines of annotation/video mismatch count as warnings.

    `manifest` names the file in messages; a row's line is its 1-based position in the table.
    `exact=True` counts video packets rather than trusting container headers.
    """
    report = ValidationReport(manifest=str(manifest))
    for i, (_, row) in enumerate(df.iterrows()):
        _check_row(row, i + 1, str(manifest), report, tolerate_length, exact)
    return report
