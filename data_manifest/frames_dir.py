"""Counting the face images of a cropped_aligned/<track> folder (1-based %05d.jpg names)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def frame_numbers(frames_dir: str | os.PathLike) -> np.ndarray:
    """Sorted 1-based frame numbers (n,) int64 of the images named like 00001.jpg in a folder."""
    numbers = []
    with os.scandir(frames_dir) as it:
        for entry in it:
            stem, suffix = os.path.splitext(entry.name)
            if suffix.lower() in IMAGE_SUFFIXES and stem.isdigit():
                numbers.append(int(stem))
    return np.asarray(sorted(numbers), dtype=np.int64)


def count_frames(frames_dir: str | os.PathLike) -> int:
    """Number of face images in the folder, -1 when the folder does not exist."""
    if not frames_dir or not Path(frames_dir).is_dir():
        return -1
    return int(len(frame_numbers(frames_dir)))
