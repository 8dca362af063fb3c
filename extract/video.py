"""Video frames with their presentation times, streamed in batches.

Times come from each frame's PTS times the stream's time base, so variable frame
rate videos keep their true timeline (audio is later pooled onto these times).
A folder of pre-cropped frames (Aff-Wild2 `cropped_aligned/<track>/%05d.jpg`,
1-based) is the other visual input: missing files are marked absent, and times
follow the video's frame rate.

PyAV and OpenCV are imported inside the functions so that importing `extract`
stays light.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

# Frames-folder file name pattern (Aff-Wild2 cropped_aligned), 1-based frame number.
FRAME_NAME = "{:05d}.jpg"

# The frame count a container declares is a hint, not a promise: an edit list hides leading
# frames (cut or priming), variable-frame-rate recorders write empty "dropped" packets, muxers
# count differently. The timeline is the frames the decoder gives, each at its PTS. A
# difference of more than DECLARED_WARN_FRACTION (and more than DECLARED_WARN_FRAMES; off by
# one is everyday) is said in one line. Only a decode error, or a shortfall of more than
# TRUNCATED_FRACTION of the frames the container lists and does not hide, fails the file:
# honest differences cost a few frames or percent, while a file cut short (an interrupted copy
# or download keeps the header, which lists every frame, and loses the media data after the
# cut; the demuxer then ends quietly) loses whatever lay after the cut, typically far more.
DECLARED_WARN_FRACTION = 0.02
DECLARED_WARN_FRAMES = 2
TRUNCATED_FRACTION = 0.25


class VideoDecodeError(RuntimeError):
    """A video that cannot be opened or decoded to its end; the message names the file."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot decode video {self.path}: {reason}")


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video, read without decoding frames."""

    fps: float  # average frame rate (frames / s); NaN if the container does not say
    n_frames: int  # video frames (declared count, a hint, else counted packets)
    width: int  # frame width in pixels, as shown (after the rotation)
    height: int  # frame height in pixels, as shown (after the rotation)
    duration: float  # seconds (container duration, else stream duration); NaN if unknown
    has_audio: bool  # the container has at least one audio stream
    audio_start: float  # first audio PTS in seconds (0.0 when there is no audio)
    video_start: float  # first video PTS in seconds
    rotation: int = 0  # display rotation, degrees counterclockwise (0, 90, 180 or -90)


def _av_errors() -> tuple[type[BaseException], ...]:
    import av

    errors: list[type[BaseException]] = [OSError, EOFError, ValueError]
    for name in ("FFmpegError",):
        cls = getattr(av, name, None) or getattr(getattr(av, "error", None), name, None)
        if cls is not None:
            errors.append(cls)
    return tuple(errors)


def _open(path: str | os.PathLike):
    import av

    if not os.path.exists(path):
        raise VideoDecodeError(path, "file not found")
    try:
        container = av.open(str(path))
    except _av_errors() as exc:
        raise VideoDecodeError(path, f"cannot open container ({exc})") from exc
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(path, "no video stream")
    return container


def _seconds(value, time_base) -> float:
    if value is None or time_base is None:
        return float("nan")
    return float(value * time_base)


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Read the container header (and count packets if it declares no frame count)."""
    container = _open(path)
    try:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else float("nan")
        n_frames = int(stream.frames or 0)
        if n_frames <= 0:
            try:
                n_frames = sum(1 for p in container.demux(stream) if p.size > 0)
            except _av_errors() as exc:
                raise VideoDecodeError(path, f"cannot read packets ({exc})") from exc
        if container.duration is not None:
            duration = container.duration / 1_000_000
        else:
            duration = _seconds(stream.duration, stream.time_base)
        video_start = _seconds(stream.start_time, stream.time_base)
        audio = container.streams.audio
        audio_start = _seconds(audio[0].start_time, audio[0].time_base) if audio else 0.0
        rotation = _first_frame_rotation(container, path)
        width, height = int(stream.codec_context.width), int(stream.codec_context.height)
        if rotation in (90, -90):
            width, height = height, width
        return VideoInfo(
            fps=fps,
            n_frames=n_frames,
            width=width,
            height=height,
            duration=float(duration),
            has_audio=bool(audio),
            audio_start=0.0 if math.isnan(audio_start) else audio_start,
            video_start=0.0 if math.isnan(video_start) else video_start,
            rotation=rotation,
        )
    finally:
        container.close()


def _quarter_turns(frame, path) -> int:
    """Counterclockwise quarter turns that show the frame upright, from its display matrix."""
    degrees = getattr(frame, "rotation", 0) or 0
    turns = round(degrees / 90)
    if abs(degrees - 90 * turns) > 1:
        log.warning(
            "%s: display rotation of %s degrees is not a quarter turn; ignored", path, degrees
        )
        return 0
    return turns % 4


def _first_frame_rotation(container, path) -> int:
    """Display rotation (degrees counterclockwise) of the first decodable frame; 0 if none."""
    try:
        container.seek(0)
        frame = next(container.decode(container.streams.video[0]), None)
    except _av_errors():
        return 0
    if frame is None:
        return 0
    return {0: 0, 1: 90, 2: 180, 3: -90}[_quarter_turns(frame, path)]


def iter_video_frames(
    path: str | os.PathLike,
    batch_size: int = 32,
    check_truncation: bool = True,
    autorotate: bool = True,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Decode a video into batches of (times float64 (n,) s, frames uint8 (n, H, W, 3) RGB).

    Only one batch is held in memory. Times are each decoded frame's PTS. With `autorotate`,
    frames are turned upright as a player shows them (the container's display matrix, in
    quarter turns; phones record portrait video this way), so faces stand upright and boxes
    and landmarks are in shown pixels. The declared frame count is a hint (see
    DECLARED_WARN_FRACTION): a difference is warned about; VideoDecodeError, naming the file,
    is raised when the container is unreadable, decoding fails midway, or (with
    `check_truncation`) the stream ends far short of the frames the container lists.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    container = _open(path)
    errors = _av_errors()
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        declared = int(stream.frames or 0)
        time_base = stream.time_base
        times: list[float] = []
        frames: list[np.ndarray] = []
        n_decoded = 0
        n_hidden = 0  # packets the container hides (edit list) or leaves empty (dropped frames)
        last_time = -math.inf
        turns: int | None = None
        try:
            for packet in container.demux(stream):
                if packet.is_discard or (packet.size == 0 and packet.pts is not None):
                    n_hidden += 1
                for frame in packet.decode():
                    if frame.pts is not None and time_base is not None:
                        t = float(frame.pts * time_base)
                    elif frame.time is not None:
                        t = float(frame.time)
                    else:  # no timestamp at all: step by the nominal rate
                        rate = float(stream.average_rate or 25)
                        t = last_time + 1.0 / rate if n_decoded else 0.0
                    last_time = t
                    image = frame.to_ndarray(format="rgb24")  # (H, W, 3) as stored
                    if turns is None:  # one display matrix per stream: read it once
                        turns = _quarter_turns(frame, path) if autorotate else 0
                    if turns:
                        image = np.ascontiguousarray(np.rot90(image, turns))  # (H', W', 3) shown
                    times.append(t)
                    frames.append(image)
                    n_decoded += 1
                    if len(frames) == batch_size:
                        yield np.asarray(times, np.float64), np.stack(frames)
                        times, frames = [], []
        except errors as exc:
            raise VideoDecodeError(
                path, f"decoding failed after {n_decoded} frames ({exc})"
            ) from exc
        if frames:
            yield np.asarray(times, np.float64), np.stack(frames)
        if n_decoded == 0:
            raise VideoDecodeError(path, "no frame could be decoded")
        if declared > 0:
            _check_declared(path, declared, n_decoded, n_hidden, check_truncation)
    finally:
        container.close()


def _check_declared(path, declared: int, decoded: int, hidden: int, check_truncation: bool):
    """Compare the decoded frames with the declared count (see DECLARED_WARN_FRACTION)."""
    listed = declared - hidden  # frames the container lists and does not hide
    if check_truncation and decoded < (1.0 - TRUNCATED_FRACTION) * listed:
        raise VideoDecodeError(
            path,
            f"truncated: decoded {decoded} of {declared} declared frames "
            f"(more than {TRUNCATED_FRACTION:.0%} short)",
        )
    if abs(declared - decoded) > max(DECLARED_WARN_FRAMES, DECLARED_WARN_FRACTION * declared):
        hint = f"; {hidden} packets hidden by an edit list or empty" if hidden else ""
        log.warning(
            "%s: container declares %d frames, %d decoded%s; the timeline is the decoded frames",
            path,
            declared,
            decoded,
            hint,
        )


def frame_path(frames_dir: str | os.PathLike, index: int) -> str:
    """Path of 0-based frame `index` in a frames folder (files are numbered from 1)."""
    return os.path.join(str(frames_dir), FRAME_NAME.format(index + 1))


def count_frames_in_folder(frames_dir: str | os.PathLike) -> int:
    """Highest frame number present in a frames folder (0 when it holds none)."""
    best = 0
    for name in os.listdir(frames_dir):
        stem, ext = os.path.splitext(name)
        if ext.lower() == ".jpg" and stem.isdigit():
            best = max(best, int(stem))
    return best


def _read_rgb(path: str, size: tuple[int, int] | None) -> np.ndarray | None:
    import cv2

    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        return None
    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)  # (H, W, 3)
    if size is not None and image.shape[:2] != size:
        image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return image


def _folder_frame_size(frames_dir: str, n_frames: int, default: int) -> tuple[int, int]:
    for i in range(n_frames):
        p = frame_path(frames_dir, i)
        if os.path.exists(p):
            image = _read_rgb(p, None)
            if image is not None:
                return image.shape[0], image.shape[1]
    return default, default


def iter_frames_folder(
    frames_dir: str | os.PathLike,
    n_frames: int | None,
    fps: float,
    batch_size: int = 32,
    start: float = 0.0,
    default_size: int = 112,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Read `%05d.jpg` frames 1..n_frames in batches of (times (n,), frames (n, H, W, 3), present (n,)).

    Frame i (0-based) has time `start + i / fps`. A missing or unreadable file gives a
    black frame with present False. All frames take the size of the first readable one
    (`default_size` square when none is readable). `n_frames=None` uses the highest
    number found in the folder.
    """
    frames_dir = str(frames_dir)
    if not os.path.isdir(frames_dir):
        raise FileNotFoundError(f"frames folder not found: {frames_dir}")
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"frames folder {frames_dir}: need a positive fps, got {fps}")
    if n_frames is None:
        n_frames = count_frames_in_folder(frames_dir)
    size = _folder_frame_size(frames_dir, n_frames, default_size)
    for lo in range(0, n_frames, batch_size):
        hi = min(n_frames, lo + batch_size)
        frames = np.zeros((hi - lo, size[0], size[1], 3), np.uint8)  # (n, H, W, 3)
        present = np.zeros(hi - lo, bool)
        for i in range(lo, hi):
            p = frame_path(frames_dir, i)
            if not os.path.exists(p):
                continue
            image = _read_rgb(p, size)
            if image is None:
                log.warning("unreadable frame image %s: marked absent", p)
                continue
            frames[i - lo] = image
            present[i - lo] = True
        times = start + np.arange(lo, hi, dtype=np.float64) / fps
        yield times, frames, present
