"""Decode a video's audio stream to 16 kHz mono float32 on the container timeline.

Why this shape: every audio encoder wants 16 kHz mono, and alignment to video frames
needs the time of the first sample on the same clock as the video frame times (the
container's presentation times), not "sample 0 = frame 0". So the track carries its
`start` (the first decoded frame's presentation time; AAC priming and stream start
offsets are already folded in by the demuxer) and gaps in the stream are filled with
zeros so that sample `k` sits at `start + k / sr`.

Amplitude is peak-normalised to [-1, 1] (as the ABAW8 system does). A file without an
audio stream, a silent stream or one that fails to decode gives a track with
`valid=False`, zeros and a `reason`; it is logged and never raises, so one bad audio
stream costs the audio of one track, not the job.

Decoding is streamed: each decoded frame is down-mixed and fed to a soxr streaming
resampler, so memory is the 16 kHz output plus one frame. `_left` / `_right` tracks of
one video share the decode through a small LRU keyed by path, size and mtime.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class AudioDecodeConfig:
    sample_rate: int = SAMPLE_RATE  # output rate (Hz); every encoder here expects 16 kHz
    quality: str = "HQ"  # soxr quality: "QQ", "LQ", "MQ", "HQ", "VHQ"
    normalize: bool = True  # peak-normalise to [-1, 1]
    silence_peak: float = 1e-4  # peak |x| below this (-80 dBFS) counts as silence -> invalid
    max_gap_s: float = 3600.0  # a PTS jump larger than this is a broken stream, not a gap to fill


@dataclass(frozen=True, eq=False)  # eq=False: compared by identity, never element-wise
class AudioTrack:
    """Mono audio on the container timeline: sample k is at time `start + k / sr`."""

    samples: np.ndarray = field(repr=False)  # (S,) float32 in [-1, 1]; zeros when invalid
    sr: int = SAMPLE_RATE  # samples per second
    start: float = 0.0  # container time (s) of samples[0]
    valid: bool = True  # False: no / silent / broken audio stream (samples are zeros)
    reason: str = ""  # why invalid ("" when valid)
    source: str = ""  # file the track was decoded from

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration(self) -> float:
        return self.n_samples / self.sr

    @property
    def end(self) -> float:
        return self.start + self.duration


# --------------------------------------------------------------------------- cache

_CACHE_SIZE = 2  # _left and _right of one video are neighbours in a sorted manifest
_cache: OrderedDict[tuple, AudioTrack] = OrderedDict()
_cache_lock = threading.Lock()


def clear_audio_cache() -> None:
    """Forget every cached decode (tests, or to release memory between videos)."""
    with _cache_lock:
        _cache.clear()


def load_audio(
    path: str | os.PathLike, config: AudioDecodeConfig | None = None, *, cache: bool = True
) -> AudioTrack:
    """Decode the audio of `path` (see module docstring); cached per (path, size, mtime).

    Raises FileNotFoundError when the file does not exist (that is a manifest error, not
    an audio problem); everything else about the audio gives an invalid track.
    """
    config = config or AudioDecodeConfig()
    path = os.path.abspath(os.fspath(path))
    st = os.stat(path)  # FileNotFoundError names the path
    key = (path, st.st_size, st.st_mtime_ns, config)
    if cache:
        with _cache_lock:
            if key in _cache:
                _cache.move_to_end(key)
                return _cache[key]
    track = decode_audio(path, config)
    if cache:
        with _cache_lock:
            _cache[key] = track
            _cache.move_to_end(key)
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
    return track


# --------------------------------------------------------------------------- decoding


def _frame_to_mono(frame) -> np.ndarray:
    """One PyAV AudioFrame -> (n,) float32 mono (mean over channels), in [-1, 1] scale."""
    arr = frame.to_ndarray()  # planar (C, n) or packed (1, n*C)
    n_ch = len(frame.layout.channels)
    if not frame.format.is_planar:
        arr = arr.reshape(-1, n_ch).T  # (C, n)
    if arr.dtype == np.int16:
        arr = arr.astype(np.float32) / 32768.0
    elif arr.dtype == np.int32:
        arr = arr.astype(np.float32) / 2147483648.0
    elif arr.dtype == np.uint8:
        arr = (arr.astype(np.float32) - 128.0) / 128.0
    return arr.astype(np.float32, copy=False).mean(axis=0)  # (n,)


class _Growable:
    """Append-only float32 buffer pre-sized from the stream duration (avoids a 2x concat)."""

    def __init__(self, capacity: int):
        self.buf = np.zeros(max(int(capacity), 1024), np.float32)
        self.n = 0

    def append(self, x: np.ndarray) -> None:
        need = self.n + x.shape[0]
        if need > self.buf.shape[0]:
            new = np.zeros(max(need, int(self.buf.shape[0] * 1.5)), np.float32)
            new[: self.n] = self.buf[: self.n]
            self.buf = new
        self.buf[self.n : need] = x
        self.n = need

    def result(self) -> np.ndarray:
        if self.buf.shape[0] - self.n > max(self.n // 8, 64000):  # give back a large tail
            return self.buf[: self.n].copy()
        return self.buf[: self.n]  # a view: no second copy of a long track


def _invalid(path: str, reason: str, duration: float, start: float, sr: int) -> AudioTrack:
    log.warning("audio of %s is not usable: %s (audio/valid = False, zeros)", path, reason)
    n = max(int(round(max(duration, 0.0) * sr)), 0)
    samples = np.zeros(n, np.float32)
    samples.flags.writeable = False
    return AudioTrack(samples, sr, float(start), False, reason, path)


def decode_audio(path: str, config: AudioDecodeConfig | None = None) -> AudioTrack:
    """Decode without the cache; see `load_audio`."""
    import av
    import soxr

    config = config or AudioDecodeConfig()
    sr = config.sample_rate
    try:
        container = av.open(path)
    except av.FFmpegError as err:
        return _invalid(path, f"cannot open container: {err}", 0.0, 0.0, sr)
    with container:
        duration = container.duration / 1e6 if container.duration else 0.0
        c_start = container.start_time / 1e6 if container.start_time else 0.0
        if not container.streams.audio:
            return _invalid(path, "no audio stream", duration, c_start, sr)
        stream = container.streams.audio[0]
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        s_start = c_start
        if stream.start_time is not None and stream.time_base is not None:
            s_start = float(stream.start_time * stream.time_base)
        in_rate = stream.rate or stream.codec_context.sample_rate
        if not in_rate:
            return _invalid(path, "audio stream has no sample rate", duration, s_start, sr)

        out = _Growable(int(duration * sr) + sr)  # 1 s slack for resampler rounding
        resampler = soxr.ResampleStream(in_rate, sr, 1, dtype="float32", quality=config.quality)
        start: float | None = None
        cursor = 0  # input samples fed so far (including filled gaps)
        try:
            for frame in container.decode(stream):
                if frame.samples == 0:
                    continue
                if frame.sample_rate != in_rate:
                    raise ValueError(
                        f"sample rate changes mid-stream ({in_rate} -> {frame.sample_rate} Hz)"
                    )
                if start is None:
                    start = float(frame.time) if frame.time is not None else s_start
                elif frame.time is not None:
                    gap = int(round((frame.time - start) * in_rate)) - cursor
                    if gap > config.max_gap_s * in_rate:
                        raise ValueError(f"timestamp jump of {gap / in_rate:.1f} s")
                    if gap > in_rate // 1000:  # > 1 ms missing: keep samples on their times
                        for k in range(0, gap, in_rate):  # one second of zeros at a time
                            zeros = np.zeros(min(in_rate, gap - k), np.float32)
                            out.append(resampler.resample_chunk(zeros))
                        cursor += gap
                mono = _frame_to_mono(frame)  # (n,)
                out.append(resampler.resample_chunk(mono))
                cursor += mono.shape[0]
            out.append(resampler.resample_chunk(np.zeros(0, np.float32), last=True))
        except (av.FFmpegError, ValueError) as err:
            return _invalid(path, f"audio stream fails to decode: {err}", duration, s_start, sr)

    if start is None or out.n == 0:
        return _invalid(path, "audio stream has no samples", duration, s_start, sr)
    samples = out.result()
    peak = max(float(samples.max()), -float(samples.min()))  # no full-size |x| temporary
    if not np.isfinite(peak):
        return _invalid(path, "audio has non-finite samples", duration, start, sr)
    if peak < config.silence_peak:
        return _invalid(path, f"silent (peak {peak:.2e})", samples.shape[0] / sr, start, sr)
    if config.normalize:
        samples /= peak
    samples.flags.writeable = False
    return AudioTrack(samples, sr, start, True, "", path)
