"""Small real media made in the tests: videos written with PyAV, frame folders with OpenCV,
scikit-image's astronaut photo, synthetic Aff-Wild2 manifests."""

from __future__ import annotations

import fractions
import os
from pathlib import Path

import numpy as np
import pytest


def write_video(
    path: str,
    n_frames: int = 12,
    fps: int = 25,
    size: tuple[int, int] = (64, 48),
    codec: str = "libx264",
    frame_ms: list[int] | None = None,
    frames: np.ndarray | None = None,
    options: dict[str, str] | None = None,
) -> str:
    """Write a small video. `frame_ms` gives per-frame durations (ms) for a variable-rate file."""
    import av

    w, h = size
    container = av.open(path, "w", options=options or {})
    stream = container.add_stream(codec, rate=fps)
    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
    if frame_ms is not None:
        ms = fractions.Fraction(1, 1000)
        stream.time_base = ms
        stream.codec_context.time_base = ms
    t = 0
    for i in range(n_frames):
        if frames is not None:
            image = frames[i]
        else:  # a smooth moving gradient: no face, not constant
            xs = np.linspace(0, 255, w)[None, :] + 8 * i
            image = np.repeat(
                ((xs + np.zeros((h, 1))) % 256).astype(np.uint8)[..., None], 3, axis=2
            )
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        if frame_ms is not None:
            frame.pts = t
            frame.time_base = fractions.Fraction(1, 1000)
            t += frame_ms[i]
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def astronaut_rgb() -> np.ndarray:
    """scikit-image's astronaut photo, RGB (512, 512, 3); skips the test when it is not installed."""
    skimage = pytest.importorskip("skimage")
    import cv2

    path = os.path.join(os.path.dirname(skimage.__file__), "data", "astronaut.png")
    if not os.path.isfile(path):
        pytest.skip("scikit-image's astronaut photo is not installed")
    return cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)  # (512, 512, 3)


def synth_manifest(base: Path, tracks: int, frames: int, seed: int) -> Path:
    """A synthetic Aff-Wild2 tree under base/data and its manifest, base/manifest.parquet."""
    from data_manifest.cli import main as manifest_main

    data = base / "data"
    synth = ["synth", "--out", str(data), "--tracks", str(tracks), "--frames", str(frames)]
    assert manifest_main([*synth, "--seed", str(seed), "--quiet"]) == 0
    manifest = base / "manifest.parquet"
    assert manifest_main(["affwild2", "--root", str(data), "--out", str(manifest)]) == 0
    return manifest


@pytest.fixture
def mp4_video(tmp_path) -> str:
    return write_video(os.path.join(tmp_path, "clip.mp4"), n_frames=12)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, str]:
    from extract.tiny_models import write_tiny_models

    return write_tiny_models(
        tmp_path_factory.mktemp("tiny_models"), ("dinov2", "dinov2_registers", "convnext")
    )
