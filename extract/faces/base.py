"""The face/landmark interface every backend honours, and the registry that finds backends.

A backend turns a batch of RGB frames into a FaceBatch: one face per frame (the
track's face), its box and 68 landmarks in source pixels, and a valid flag. A
frame without a usable face gets valid False and zeros, never an exception.

Most backends are "detect, then place landmarks in the box": `DetectThenLandmark`
holds that loop once (detection every k frames, the box carried and smoothed in
between, the track's side choosing among several faces) and a backend supplies
only `detect` and `landmarks`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from extract.faces.tracking import FaceTracker, TrackerConfig

N_LANDMARKS = 68


@dataclass
class FaceBatch:
    """One face per frame of a batch, in source pixel coordinates."""

    valid: np.ndarray  # (n,) bool: a face was found (or carried) for the frame
    box: np.ndarray  # (n, 4) float32 x0, y0, x1, y1; zeros where not valid
    landmarks: np.ndarray  # (n, 68, 2) float32 (x, y); zeros where not valid

    def __post_init__(self) -> None:
        self.valid = np.asarray(self.valid, bool)
        self.box = np.asarray(self.box, np.float32)
        self.landmarks = np.asarray(self.landmarks, np.float32)
        n = len(self.valid)
        if self.box.shape != (n, 4) or self.landmarks.shape != (n, N_LANDMARKS, 2):
            raise ValueError(
                f"FaceBatch shapes disagree: valid {self.valid.shape}, box {self.box.shape}, "
                f"landmarks {self.landmarks.shape}"
            )

    def __len__(self) -> int:
        return len(self.valid)

    @classmethod
    def empty(cls, n: int) -> FaceBatch:
        """n frames without a face."""
        return cls(
            valid=np.zeros(n, bool),
            box=np.zeros((n, 4), np.float32),
            landmarks=np.zeros((n, N_LANDMARKS, 2), np.float32),
        )

    @classmethod
    def concat(cls, batches: list[FaceBatch]) -> FaceBatch:
        if not batches:
            return cls.empty(0)
        return cls(
            valid=np.concatenate([b.valid for b in batches]),
            box=np.concatenate([b.box for b in batches]),
            landmarks=np.concatenate([b.landmarks for b in batches]),
        )


@runtime_checkable
class LandmarkBackend(Protocol):
    """What the extraction job calls; state (the tracked box) lives between calls of one track."""

    name: str
    aligned_input: bool  # frames are aligned face crops; may be set between tracks, before reset()

    def reset(self, side: str = "none") -> None:
        """Start a new track; `side` ("left", "right", "none") picks among several faces."""

    def __call__(self, frames: np.ndarray) -> FaceBatch:
        """frames uint8 (n, H, W, 3) RGB, consecutive frames of the current track."""

    def fingerprint_fields(self) -> dict[str, Any]:
        """Everything that changes the output numbers (backend, weights, options)."""


def blank_frames(frames: np.ndarray) -> np.ndarray:
    """(n,) True for frames of one constant colour (fill for missing images): no face there."""
    flat = frames.reshape(len(frames), -1)  # (n, H*W*3)
    return flat.min(axis=1) == flat.max(axis=1)


class DetectThenLandmark:
    """Shared loop: detect every k frames, carry/smooth the chosen box, place landmarks in it."""

    name = "base"
    aligned_input = False

    def __init__(self, tracker: TrackerConfig | None = None) -> None:
        self.tracker_config = tracker or TrackerConfig()
        self._tracker = FaceTracker(self.tracker_config)

    # -- what a backend supplies -------------------------------------------------------------
    def detect(self, frames: np.ndarray) -> list[np.ndarray]:
        """frames (m, H, W, 3) -> per frame an (k, 4) float array of face boxes (k may be 0)."""
        raise NotImplementedError

    def landmarks(self, frames: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """frames (m, H, W, 3), boxes (m, 4) -> (landmarks (m, 68, 2), ok (m,) bool)."""
        raise NotImplementedError

    def backend_fields(self) -> dict[str, Any]:
        return {}

    # -- the shared part -----------------------------------------------------------------------
    def reset(self, side: str = "none") -> None:
        self._tracker.reset(side)

    def fingerprint_fields(self) -> dict[str, Any]:
        return {
            "landmarks": self.name,
            "detect_every": self.tracker_config.detect_every,
            "smoothing": self.tracker_config.smoothing,
            **self.backend_fields(),
        }

    def __call__(self, frames: np.ndarray) -> FaceBatch:
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be (n, H, W, 3) RGB, got {frames.shape}")
        n = len(frames)
        out = FaceBatch.empty(n)
        if n == 0:
            return out
        blank = blank_frames(frames)
        due = self._tracker.due(n)  # (n,) frames where the detector runs
        det_idx = np.flatnonzero(due & ~blank)
        detections = (
            dict(zip(det_idx.tolist(), self.detect(frames[det_idx]))) if len(det_idx) else {}
        )
        boxes = np.zeros((n, 4), np.float32)
        has_box = np.zeros(n, bool)
        for i in range(n):
            if blank[i]:
                box = self._tracker.lose() if due[i] else None
            elif due[i]:
                box = self._tracker.update(detections.get(i, np.zeros((0, 4))), frames.shape[1:3])
            else:
                box = self._tracker.current
            if box is not None:
                boxes[i] = box
                has_box[i] = True
        idx = np.flatnonzero(has_box)
        if len(idx):
            lms, ok = self.landmarks(frames[idx], boxes[idx])
            out.landmarks[idx] = np.where(ok[:, None, None], lms, 0.0)
            out.box[idx] = np.where(ok[:, None], boxes[idx], 0.0)
            out.valid[idx] = ok
        return out


# -- registry ---------------------------------------------------------------------------------

LANDMARK_BACKENDS: dict[str, Callable[..., LandmarkBackend]] = {}

# backend name -> module that registers it (imported on first use)
_BACKEND_MODULES = {
    "template": "extract.faces.template",
    "fan": "extract.faces.fan",
    "mediapipe": "extract.faces.mediapipe_mesh",
}


def register_landmark_backend(
    name: str,
) -> Callable[[Callable[..., LandmarkBackend]], Callable[..., LandmarkBackend]]:
    def wrap(factory: Callable[..., LandmarkBackend]) -> Callable[..., LandmarkBackend]:
        LANDMARK_BACKENDS[name] = factory
        return factory

    return wrap


def known_landmark_backends() -> list[str]:
    return sorted(_BACKEND_MODULES)


def get_landmark_backend(
    name: str,
    device: str = "cpu",
    aligned_input: bool = False,
    detect_every: int = 1,
    **kwargs: Any,
) -> LandmarkBackend:
    """Build backend `name` ("template", "fan", "mediapipe").

    `aligned_input` says the frames are already face crops (cropped_aligned);
    `detect_every` runs the detector on every k-th frame and carries the box between.
    """
    if name not in LANDMARK_BACKENDS:
        if name not in _BACKEND_MODULES:
            raise KeyError(f"unknown landmark backend {name!r}; known: {known_landmark_backends()}")
        importlib.import_module(_BACKEND_MODULES[name])
    return LANDMARK_BACKENDS[name](
        device=device, aligned_input=aligned_input, detect_every=detect_every, **kwargs
    )
