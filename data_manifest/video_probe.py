"""Frame rate and frame count of a video, read with PyAV without decoding pictures."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass


class VideoProbeError(OSError):
    """A video that PyAV cannot open or that has no video stream; the message names the file."""


@dataclass(frozen=True)
class VideoCounts:
    """What the manifest records about a video."""

    fps: float  # average frame rate, NaN unknown
    n_frames: int  # frame count, -1 unknown
    has_audio: bool  # the container has an audio stream


def _open(path: str | os.PathLike):
    try:
        import av
    except ImportError as exc:  # pragma: no cover - av is a runtime dependency
        raise ImportError("reading videos needs PyAV: pip install av") from exc
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoProbeError(f"{path}: cannot open video ({exc})") from exc


def probe_counts(path: str | os.PathLike, exact: bool = False) -> VideoCounts:
    """fps and frame count; `exact=True` counts the video packets instead of trusting the header."""
    import av

    with _open(path) as container:
        if not container.streams.video:
            raise VideoProbeError(f"{path}: no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.base_rate
        fps = float(rate) if rate else float("nan")
        n_frames = int(stream.frames or 0)
        has_audio = bool(container.streams.audio)
        if exact or n_frames <= 0:
            try:
                n_frames = sum(1 for pkt in container.demux(stream) if pkt.size > 0)
            except av.error.FFmpegError as exc:
                raise VideoProbeError(f"{path}: cannot read packets ({exc})") from exc
        if n_frames <= 0 and not math.isnan(fps) and stream.duration and stream.time_base:
            n_frames = int(round(float(stream.duration * stream.time_base) * fps))
    return VideoCounts(fps=fps, n_frames=n_frames if n_frames > 0 else -1, has_audio=has_audio)
