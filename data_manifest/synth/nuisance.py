"""What makes the synthetic data non-trivial: pose, lighting, blur, noise, occluders, bad frames.

All of it is sampled per video or per face up front (a timeline), so rendering a frame
is a pure function of the timeline and the frame index.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data_manifest.synth.au_process import sample_events
from data_manifest.synth.config import SynthConfig
from data_manifest.synth.face_render import Occluder

CORRUPTIONS = ("noise", "blur", "flash", "dark", "blocks")


def smooth_walk(rng: np.random.Generator, n: int, smooth: int) -> np.ndarray:
    """A slowly varying signal (n,) in about [-1, 1]: white noise smoothed over `smooth` frames."""
    k = max(1, smooth)
    x = rng.normal(0, 1, n + 4 * k)
    kernel = np.exp(-0.5 * (np.arange(-2 * k, 2 * k + 1) / k) ** 2)
    y = np.convolve(x, kernel / kernel.sum(), mode="same")[2 * k : 2 * k + n]
    return (y / (y.std() + 1e-8) / 2.5).clip(-1, 1)


@dataclass
class CameraTimeline:
    """Per-frame camera and lighting of one video."""

    gain: np.ndarray  # (T,) global brightness factor
    cast: np.ndarray  # (T, 3) per-channel colour factor
    blur: np.ndarray  # (T,) Gaussian blur sigma in pixels (0 = sharp)
    noise: float  # camera noise sigma (grey levels)
    corruption: list[str]  # (T,) "" or one of CORRUPTIONS: a heavily corrupted frame


@dataclass
class FaceTimeline:
    """Per-frame pose, lighting and occluders of one face."""

    angle: np.ndarray  # (T,) head roll in degrees
    scale: np.ndarray  # (T,) size factor
    shift: np.ndarray  # (T, 2) offset as a share of the face size
    light: np.ndarray  # (T, 2) (angle rad, strength) of the directional light on the face
    gaze: np.ndarray  # (T, 2) iris offset
    align_err: np.ndarray  # (T, 4) residual crop error: dx, dy (share), dangle (deg), dscale
    occluders: list[tuple[Occluder, ...]]  # (T,) occluders in front of the face
    mouth_hidden: np.ndarray  # (T,) bool, the mouth is covered or smeared


def camera_timeline(rng: np.random.Generator, cfg: SynthConfig, n: int) -> CameraTimeline:
    gain = 1 + cfg.lighting_drift * smooth_walk(rng, n, int(2 * cfg.fps))
    cast = 1 + 0.06 * np.stack([smooth_walk(rng, n, int(3 * cfg.fps)) for _ in range(3)], -1)
    blur = np.zeros(n, np.float32)
    for a, b in sample_events(rng, n, 0.12, (5, 30)):
        blur[a:b] = rng.uniform(0.7, 1.5)
    corrupt = [""] * n
    for t in np.flatnonzero(rng.random(n) < cfg.corrupt_frame_rate):
        corrupt[int(t)] = str(rng.choice(CORRUPTIONS))
    return CameraTimeline(
        gain=gain.astype(np.float32),
        cast=cast.astype(np.float32),
        blur=blur,
        noise=float(rng.uniform(*cfg.noise_sigma)),
        corruption=corrupt,
    )


def _random_occluder(rng: np.random.Generator, mouth: bool) -> Occluder:
    if mouth:
        kind = str(rng.choice(["hand", "object", "blur"], p=[0.4, 0.3, 0.3]))
        center = (0.5 + rng.uniform(-0.03, 0.03), 0.78 + rng.uniform(-0.02, 0.02))
        size = (rng.uniform(0.13, 0.17), rng.uniform(0.08, 0.11))
    else:
        kind = str(rng.choice(["hand", "object"]))
        center = (rng.uniform(0.15, 0.85), rng.uniform(0.2, 0.85))
        size = (rng.uniform(0.08, 0.18), rng.uniform(0.06, 0.14))
    color = tuple(float(c) for c in rng.uniform(40, 220, 3))
    if kind == "hand":
        color = tuple(float(c) for c in np.array([215, 170, 140]) * rng.uniform(0.5, 1.05))
    return Occluder(kind, center, size, color, float(rng.uniform(-30, 30)))


def face_timeline(rng: np.random.Generator, cfg: SynthConfig, n: int) -> FaceTimeline:
    jit = np.stack([rng.normal(0, 1, n) for _ in range(4)], -1) * 0.15  # small per-frame tremor
    angle = cfg.pose_jitter_deg * (smooth_walk(rng, n, int(cfg.fps)) + jit[:, 0])
    scale = 1 + 0.05 * (smooth_walk(rng, n, int(1.5 * cfg.fps)) + jit[:, 1])
    shift = (
        0.06 * np.stack([smooth_walk(rng, n, int(cfg.fps)) for _ in range(2)], -1)
        + 0.01 * jit[:, 2:]
    )
    light = np.stack(
        [
            np.pi * smooth_walk(rng, n, int(3 * cfg.fps)),
            0.18 * np.abs(smooth_walk(rng, n, int(3 * cfg.fps))),
        ],
        -1,
    )
    gaze = np.stack([smooth_walk(rng, n, 12) for _ in range(2)], -1)
    err = rng.normal(0, 1, (n, 4)) * np.array(
        [cfg.align_jitter, cfg.align_jitter, 1.5, cfg.align_jitter]
    )
    err += (
        0.5
        * np.stack([smooth_walk(rng, n, 20) for _ in range(4)], -1)
        * np.array([cfg.align_jitter, cfg.align_jitter, 1.5, cfg.align_jitter])
    )
    occluders: list[tuple[Occluder, ...]] = [() for _ in range(n)]
    for a, b in sample_events(rng, n, cfg.occluder_rate, (4, 15)):
        occ = _random_occluder(rng, mouth=False)
        for t in range(a, b):
            occluders[t] = occluders[t] + (occ,)
    hidden = np.zeros(n, bool)
    for a, b in sample_events(rng, n, cfg.mouth_hidden_rate, (2, 8)):
        occ = _random_occluder(rng, mouth=True)
        hidden[a:b] = True
        for t in range(a, b):
            occluders[t] = occluders[t] + (occ,)
    return FaceTimeline(
        angle=angle.astype(np.float32),
        scale=scale.astype(np.float32),
        shift=shift.astype(np.float32),
        light=light.astype(np.float32),
        gaze=gaze.astype(np.float32),
        align_err=err.astype(np.float32),
        occluders=occluders,
        mouth_hidden=hidden,
    )


def apply_camera(
    frame: np.ndarray, cam: CameraTimeline, t: int, rng: np.random.Generator
) -> np.ndarray:
    """Lighting, blur, noise and the frame's corruption applied to a float32 (H, W, 3) frame."""
    import cv2

    img = frame * (cam.gain[t] * cam.cast[t])[None, None, :]
    kind = cam.corruption[t]
    sigma = float(cam.blur[t])
    if kind == "blur":
        sigma = float(rng.uniform(2.5, 4.0))
    if sigma > 0:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    if kind == "flash":
        img = img * rng.uniform(1.6, 2.2)
    elif kind == "dark":
        img = img * rng.uniform(0.2, 0.35)
    elif kind == "blocks":
        h, w = img.shape[:2]
        small = cv2.resize(img, (max(1, w // 10), max(1, h // 10)), interpolation=cv2.INTER_AREA)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
    noise = cam.noise if kind != "noise" else float(rng.uniform(30, 50))
    img = img + rng.standard_normal(img.shape, dtype=np.float32) * noise
    return np.clip(img, 0, 255).astype(np.uint8)
