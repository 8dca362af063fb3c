"""Fixtures for the data_manifest tests: tiny real videos, annotation files, a small synthetic set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from data_manifest.annotations import write_annotation_file


def make_video(
    path: Path, n_frames: int, fps: int = 25, size: tuple[int, int] = (32, 24), audio: bool = False
) -> Path:
    """A real, tiny H.264 (or mpeg4) file with n_frames frames."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    with av.open(str(path), "w") as c:
        codec = "libx264" if path.suffix == ".mp4" else "mpeg4"
        vs = c.add_stream(codec, rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        for i in range(n_frames):
            frame = np.full((h, w, 3), (i * 7) % 255, np.uint8)
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts = i
            c.mux(vs.encode(vf))
        c.mux(vs.encode(None))
        if audio:
            a = c.add_stream("aac", rate=16000, layout="mono")
            af = av.AudioFrame.from_ndarray(
                np.zeros((1, 16000 * n_frames // fps), np.float32), format="flt", layout="mono"
            )
            af.sample_rate, af.pts = 16000, 0
            c.mux(a.encode(af))
            c.mux(a.encode(None))
    return path


def make_labels(path: Path, n: int, seed: int = 0, unknown: int = 0) -> np.ndarray:
    """Write random 0/1 labels for n frames (the first `unknown` rows -1); returns them."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, 12)) < 0.3).astype(np.int8)
    labels[:unknown] = -1
    write_annotation_file(path, labels)
    return labels


def make_frames(folder: Path, numbers) -> Path:
    """Empty-but-named JPEG stand-ins: only names are read when counting face images."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    img = np.zeros((8, 8, 3), np.uint8)
    for k in numbers:
        cv2.imwrite(str(folder / f"{k:05d}.jpg"), img)
    return folder


@pytest.fixture(scope="session")
def synth_small(tmp_path_factory):
    """A small synthetic dataset (4 tracks: a _left/_right pair, two singles; 40 frames)."""
    from data_manifest.synth import SynthConfig, generate_synthetic

    out = tmp_path_factory.mktemp("synth")
    truth = generate_synthetic(out, SynthConfig(tracks=4, frames=40, seed=3))
    return out, truth
