"""Write the made (not collected) clips of this folder with PyAV; README.md says which are made.

Run from the repository root: `python tests/data/clips/make_clips.py`. Frames are a plain
drawn pattern (a grey ramp with a red square in the top-left corner, so a rotation shows), the
audio a quiet hum with a 1 kHz burst at a known time (so an audio offset shows).
"""

from __future__ import annotations

import os
import struct
from fractions import Fraction

import av
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
W, H = 96, 64
SR = 16000
BURST_AT = 1.0  # container time (s) of the 1 kHz burst in every made clip with audio


def _frame(i: int) -> np.ndarray:
    x = np.linspace(0, 255, W, dtype=np.float32)
    img = np.repeat(np.repeat(x[None, :, None], H, 0), 3, 2)  # (H, W, 3)
    img = (img + 4 * i) % 256
    img[:16, :16] = (255, 0, 0)  # red marker, top-left as stored
    return img.astype(np.uint8)


def _audio(start: float, duration: float) -> np.ndarray:
    t = start + np.arange(int(duration * SR)) / SR
    x = 0.05 * np.sin(2 * np.pi * 220 * t)
    burst = (t >= BURST_AT) & (t < BURST_AT + 0.1)
    x[burst] += 0.8 * np.sin(2 * np.pi * 1000 * t[burst])
    return x.astype(np.float32)


def write_clip(path, pts_ms, audio_start=None, audio_seconds=0.0):
    """H.264 frames at `pts_ms` (time base 1 ms; negative ones fall before the edit list
    start and are hidden by the demuxer), and AAC audio from `audio_start` when given."""
    with av.open(path, "w", format="mp4") as out:
        v = out.add_stream("libx264", rate=30, options={"crf": "35", "preset": "veryfast"})
        v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        v.time_base = v.codec_context.time_base = Fraction(1, 1000)
        a = None
        if audio_start is not None:
            a = out.add_stream("aac", rate=SR, layout="mono")
            a.time_base = Fraction(1, SR)
        for i, t in enumerate(pts_ms):
            frame = av.VideoFrame.from_ndarray(_frame(i), format="rgb24")
            frame.pts = int(t)
            frame.time_base = Fraction(1, 1000)
            out.mux(v.encode(frame))
        out.mux(v.encode())
        if a is not None:
            x = _audio(audio_start, audio_seconds)
            for k in range(0, len(x), 1024):
                chunk = x[k : k + 1024][None, :]  # (1, n)
                frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
                frame.sample_rate = SR
                frame.pts = int(round(audio_start * SR)) + k
                frame.time_base = Fraction(1, SR)
                out.mux(a.encode(frame))
            out.mux(a.encode())


def set_portrait_rotation(path: str) -> None:
    """Write the track matrix a phone writes for a portrait recording (a = 0, b = 1, c = -1,
    d = 0, tx = stored height) into the first track header: a player shows the stored
    picture turned a quarter turn clockwise."""
    data = bytearray(open(path, "rb").read())
    at = data.index(b"tkhd") - 4
    version = data[at + 8]
    matrix_at = at + (48 if version == 0 else 60)
    matrix = [0, 1 << 16, 0, -1 << 16, 0, 0, H << 16, 0, 1 << 30]
    data[matrix_at : matrix_at + 36] = struct.pack(">9i", *matrix)
    with open(path, "wb") as f:
        f.write(data)


def main() -> None:
    # 98 frames of variable rate (33, 33, 50, 66 ms steps), the first 3 before the edit start
    steps = np.resize([33, 33, 50, 66], 97)
    pts = np.concatenate([[0], np.cumsum(steps)]) - int(np.sum(steps[:3]))
    write_clip(os.path.join(HERE, "vfr_editlist.mp4"), pts, audio_start=0.0, audio_seconds=4.5)
    write_clip(
        os.path.join(HERE, "audio_late.mp4"),
        np.arange(60) * 1000 / 30,
        audio_start=0.5,
        audio_seconds=1.5,
    )
    write_clip(os.path.join(HERE, "one_frame.mp4"), [0], audio_start=0.0, audio_seconds=1.2)
    rotated = os.path.join(HERE, "rotated_portrait.mp4")
    write_clip(rotated, np.arange(10) * 1000 / 30)
    set_portrait_rotation(rotated)


if __name__ == "__main__":
    main()
