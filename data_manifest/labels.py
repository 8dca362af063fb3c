"""Per-track labels for the trainer, with the one rule for annotations that do not match the video.

THE RULE: annotation line i+1 is video frame i (1-based), always; labels are never
shifted. Lines beyond the last video frame are dropped; video frames the annotation
does not reach are -1 (unknown). Any mismatch is described in `LabelResult.note`
so that it is reported, not hidden.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from data_manifest.annotations import parse_annotation_file
from data_manifest.aus import N_AUS


@dataclass(frozen=True)
class LabelResult:
    """Labels of one track aligned to its video frames."""

    labels: np.ndarray  # (n_frames, 12) int8, -1 unknown
    note: str  # describes a length mismatch, "" when the lengths agree
    n_lines: int  # frames in the annotation file (lines after the header)


def length_note(path: str, n_lines: int, n_frames: int) -> str:
    """The report for an annotation of n_lines frames against a video of n_frames ("" if equal)."""
    if n_lines == n_frames:
        return ""
    if n_lines > n_frames:
        return (
            f"{path}: annotation has {n_lines} frames, video has {n_frames}: "
            f"{n_lines - n_frames} extra line(s) from line {n_frames + 2} dropped"
        )
    return (
        f"{path}: annotation has {n_lines} frames, video has {n_frames}: "
        f"frames {n_lines + 1}-{n_frames} have no annotation and are -1"
    )


def load_labels(labels_path: str | os.PathLike, n_frames: int | None) -> LabelResult:
    """Labels of one track as (n_frames, 12) int8 following THE RULE above.

    `n_frames=None` (or negative) means the video length is unknown: the annotation is returned
    as is. An empty `labels_path` (a test track) gives all -1, which needs `n_frames`.
    Raises AnnotationError (file and line) for a malformed file.
    """
    path = str(labels_path) if labels_path else ""
    if n_frames is not None and n_frames < 0:
        n_frames = None
    if not path:
        if n_frames is None:
            raise ValueError("a track without labels needs n_frames to build its all -1 labels")
        return LabelResult(np.full((n_frames, N_AUS), -1, np.int8), "", 0)
    ann = parse_annotation_file(path)  # (N, 12) int8
    n_lines = len(ann)
    if n_frames is None:
        return LabelResult(ann, "", n_lines)
    labels = np.full((n_frames, N_AUS), -1, np.int8)  # (T, 12)
    keep = min(n_lines, n_frames)
    labels[:keep] = ann[:keep]
    return LabelResult(labels, length_note(path, n_lines, n_frames), n_lines)
