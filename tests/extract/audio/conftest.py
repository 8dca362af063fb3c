"""Fixtures for the audio tests: real media files made with PyAV, tiny random models."""

from __future__ import annotations

import fractions

import numpy as np
import pytest

BURSTS = ((1.0, 1.4), (2.6, 3.0))  # (start, end) seconds of 1 kHz tone bursts, container time
DURATION = 4.0  # seconds of audio in the generated files


def tone_bursts(sr: int, duration: float, bursts, offset: float = 0.0, amp: float = 0.5):
    """Silence with 1 kHz sine bursts at container times `bursts`; samples start at `offset`."""
    t = offset + np.arange(int(round(duration * sr))) / sr  # (S,) container time
    on = np.zeros_like(t, dtype=bool)
    for a, b in bursts:
        on |= (t >= a) & (t < b)
    return (amp * np.sin(2 * np.pi * 1000.0 * t) * on).astype(np.float32)  # (S,)


def write_media(
    path,
    *,
    fps: float = 25.0,
    frame_times=None,
    duration: float = DURATION,
    audio: np.ndarray | None = None,
    audio_rate: int = 44100,
    audio_codec: str = "aac",
    layout: str = "stereo",
    audio_offset: float = 0.0,
    audio_gap: tuple[float, float] | None = None,
    with_audio: bool = True,
):
    """Write a small video (+ audio) file; `frame_times` (s) gives variable frame rate PTS,
    `audio_gap=(at, length)` shifts the audio after `at` seconds by `length` (a PTS gap)."""
    import av

    path = str(path)
    vcodec = "libx264" if path.endswith(".mp4") else "mpeg4"
    with av.open(path, "w") as c:
        if frame_times is None:
            frame_times = np.arange(int(round(duration * fps))) / fps
        tb = fractions.Fraction(1, 1000)
        v = c.add_stream(vcodec, rate=int(round(fps)))
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.codec_context.time_base = tb
        v.time_base = tb
        a = None
        if with_audio:
            a = c.add_stream(audio_codec, rate=audio_rate)
            a.layout = layout
        for i, t in enumerate(frame_times):
            img = np.full((48, 64, 3), (i * 7) % 255, np.uint8)
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts, f.time_base = int(round(t * 1000)), tb
            for p in v.encode(f):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        if a is not None:
            x = audio if audio is not None else np.zeros(int(duration * audio_rate), np.float32)
            fmt = a.codec_context.format.name
            n_ch = 2 if layout == "stereo" else 1
            step = a.codec_context.frame_size or 1024
            off = int(round(audio_offset * audio_rate))
            atb = fractions.Fraction(1, audio_rate)
            for s in range(0, x.shape[0], step):
                chunk = x[s : s + step]
                if fmt.endswith("p"):
                    arr = np.tile(chunk[None], (n_ch, 1))  # (C, n) planar
                else:
                    arr = np.tile(chunk[:, None], (1, n_ch)).reshape(1, -1)  # (1, n*C) packed
                if fmt.startswith("s16"):
                    arr = (arr * 32767).astype(np.int16)
                af = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(arr), format=fmt, layout=layout
                )
                pts = s + off
                if audio_gap is not None and s >= audio_gap[0] * audio_rate:
                    pts += int(round(audio_gap[1] * audio_rate))  # PTS jump: samples missing
                af.sample_rate, af.pts, af.time_base = audio_rate, pts, atb
                for p in a.encode(af):
                    c.mux(p)
            for p in a.encode():
                c.mux(p)
    return path


def read_frame_times(path) -> np.ndarray:
    """Presentation times (s) of every video frame, as the container stores them."""
    import av

    with av.open(str(path)) as c:
        return np.sort(np.array([f.time for f in c.decode(video=0)], np.float64))


VFR_TIMES = np.cumsum(np.r_[0.0, np.tile([0.033, 0.05, 0.041, 0.066], 25)])[:100]  # 0..~4 s


def make_case(tmp_path, kind: str):
    """One of the three burst videos: '25fps' (mp4, AAC stereo 44.1 kHz), '30fps' (mkv, PCM
    mono 48 kHz), 'vfr' (mp4, explicit irregular PTS, AAC mono 16 kHz)."""
    if kind == "25fps":
        x = tone_bursts(44100, DURATION, BURSTS)
        return write_media(tmp_path / "v25.mp4", fps=25, audio=x, audio_rate=44100)
    if kind == "30fps":
        x = tone_bursts(48000, DURATION, BURSTS)
        return write_media(
            tmp_path / "v30.mkv",
            fps=30,
            audio=x,
            audio_rate=48000,
            audio_codec="pcm_s16le",
            layout="mono",
        )
    if kind == "vfr":
        x = tone_bursts(16000, DURATION, BURSTS)
        return write_media(
            tmp_path / "vfr.mp4", frame_times=VFR_TIMES, audio=x, audio_rate=16000, layout="mono"
        )
    raise KeyError(kind)


@pytest.fixture(scope="session")
def tiny_audio_models(tmp_path_factory):
    """Tiny random WavLM and Whisper folders written with save_pretrained; the Whisper has
    no position embeddings, so silent frames are identical and bursts stand out."""
    from extract.tiny_models import write_tiny_models

    root = tmp_path_factory.mktemp("audio_models")
    return write_tiny_models(root, ("wavlm", "whisper"), zero_whisper_positions=True)
