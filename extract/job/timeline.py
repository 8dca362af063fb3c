"""Frame times of a track, from the video container's presentation timestamps.

Demuxing packets (no decoding) gives every frame's PTS cheaply, so a track whose
visual input is a frames folder still gets the video's real times, and the store
can size its arrays before the first frame is decoded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class TimelineError(RuntimeError):
    """The video has no usable video stream or timestamps."""


def video_frame_times(path: str | Path) -> np.ndarray:
    """Presentation times in seconds of every frame of the first video stream -> (T,) float64."""
    import av

    path = str(path)
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise TimelineError(f"{path}: no video stream")
            stream = container.streams.video[0]
            base = float(stream.time_base)
            # packets an edit list hides are never decoded: they are not frames of the track
            pts = [
                p.pts
                for p in container.demux(stream)
                if p.pts is not None and p.size > 0 and not p.is_discard
            ]
    except av.error.FFmpegError as exc:
        raise TimelineError(f"{path}: cannot read the container ({exc})") from exc
    if not pts:
        raise TimelineError(f"{path}: the video stream has no timestamped frames")
    return np.sort(np.asarray(pts, dtype=np.float64)) * base


def regular_times(n_frames: int, fps: float, start: float = 0.0) -> np.ndarray:
    """Times of a frames folder without a video: frame i at start + i / fps."""
    return start + np.arange(n_frames, dtype=np.float64) / float(fps)


def frame_ends(times: np.ndarray) -> np.ndarray:
    """End of each frame's interval: the next frame's time; the last lasts the median duration."""
    if len(times) == 0:
        return times.copy()
    step = float(np.median(np.diff(times))) if len(times) > 1 else 1.0 / 30.0
    return np.append(times[1:], times[-1] + step)
