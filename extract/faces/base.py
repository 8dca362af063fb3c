"""The face/landmark interface every backend honours, and the registry that finds backends.

A backend turns a batch of RGB frames into a FaceBatch: one face per frame (the
track's face), its box and 68 landmarks in source pixels, and a valid flag. A
frame without a usable face gets valid False and zeros, never an exception.

Most backends are "detect, then place landmarks in the box": `DetectThenLandmark`
holds that loop once (detection every k frames, batched over the due frames of a
batch, the box carried and smoothed in between, the track's side choosing among
several faces) and a backend supplies only `detect` and `landmarks`. Detectors
have their own registry (extract/faces/detectors.py); a backend spec
"BACKEND:DETECTOR" (`template:s3fd`, `fan:blazeface`) picks one.

What the job sees (the contract): set `aligned_input`, call `reset(side=..., track=...)`
at the start of each track, then `backend(frames) -> FaceBatch` per batch, and
optionally `end_track() -> FaceRate` at its end (the next `reset` does it otherwise).
A track with no face, or one in under half its frames, is reported in one log
line naming it. `face_rate` holds the running counts; `timings` the seconds spent
detecting and placing landmarks.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from extract.faces.face_rate import FaceRate, FaceRateCounter
from extract.faces.tracking import FaceTracker, TrackerConfig

N_LANDMARKS = 68


@dataclass
class FaceBatch:
    """One face per frame of a batch, in source pixel coordinates."""

    valid: np.ndarray  # (n,) bool: a face was found (or carried) for the frame
    box: np.ndarray  # (n, 4) float32 x0, y0, x1, y1; zeros where not valid
    landmarks: np.ndarray  # (n, 68, 2) float32 (x, y); zeros where not valid
    # (n,) bool: the detector ran on the frame and found the track's face (False where the box
    # was carried from an earlier detection, or for backends without a separate detector)
    detected: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.valid = np.asarray(self.valid, bool)
        self.box = np.asarray(self.box, np.float32)
        self.landmarks = np.asarray(self.landmarks, np.float32)
        n = len(self.valid)
        self.detected = (
            np.zeros(n, bool) if self.detected is None else np.asarray(self.detected, bool)
        )
        if (
            self.box.shape != (n, 4)
            or self.landmarks.shape != (n, N_LANDMARKS, 2)
            or self.detected.shape != (n,)
        ):
            raise ValueError(
                f"FaceBatch shapes disagree: valid {self.valid.shape}, box {self.box.shape}, "
                f"landmarks {self.landmarks.shape}, detected {self.detected.shape}"
            )

    @property
    def face_rate(self) -> float:
        """Share of this batch's frames with a face."""
        return float(self.valid.mean()) if len(self.valid) else 1.0

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
            detected=np.concatenate([b.detected for b in batches]),
        )


@runtime_checkable
class LandmarkBackend(Protocol):
    """What the extraction job calls; state (the tracked box) lives between calls of one track."""

    name: str
    aligned_input: bool  # frames are aligned face crops; may be set between tracks, before reset()

    def reset(self, side: str = "none", track: str | None = None) -> None:
        """Start a new track; `side` ("left", "right", "none") picks among several faces.

        `track` names it in the low-face-rate warning; the previous track is reported first."""

    def __call__(self, frames: np.ndarray) -> FaceBatch:
        """frames uint8 (n, H, W, 3) RGB, consecutive frames of the current track."""

    def fingerprint_fields(self) -> dict[str, Any]:
        """Everything that changes the output numbers (backend, weights, options)."""

    def end_track(self) -> FaceRate:
        """The track's face counts; warns once (one line naming the track) when few frames had one."""


def blank_frames_reference(frames: np.ndarray) -> np.ndarray:
    """(n,) True for frames of one constant colour (fill for missing images): no face there."""
    flat = frames.reshape(len(frames), -1)  # (n, H*W*3)
    return flat.min(axis=1) == flat.max(axis=1)


def blank_frames(frames: np.ndarray, stride: int = 4099) -> np.ndarray:
    """Same as `blank_frames_reference`, without reading every byte of every real frame.

    A sparse sample (every `stride`-th value, about one cache line in 64) already
    varies in a real frame; only frames whose sample is constant are read whole, so
    the answer is exact whatever the stride."""
    flat = frames.reshape(len(frames), -1)  # (n, H*W*3)
    sample = flat[:, ::stride]  # (n, ~H*W*3/stride)
    maybe = sample.min(axis=1) == sample.max(axis=1)
    out = np.zeros(len(frames), bool)
    if maybe.any():
        out[maybe] = blank_frames_reference(frames[maybe])
    return out


def take(frames: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """frames[idx] for sorted unique idx, without copying when idx covers every frame."""
    return frames if len(idx) == len(frames) else frames[idx]


class TrackKeeping:
    """What every landmark backend keeps per track: the chosen face (`FaceTracker`) and the
    face counts (`FaceRateCounter`), started by `reset` and reported by `end_track`."""

    name = "base"

    def __init__(self, tracker: TrackerConfig | None = None) -> None:
        self.tracker_config = tracker or TrackerConfig()
        self._tracker = FaceTracker(self.tracker_config)
        self._rate = FaceRateCounter(self.name)

    def reset(self, side: str = "none", track: str | None = None) -> None:
        self._tracker.reset(side)
        self._rate.start(track)

    def end_track(self) -> FaceRate:
        return self._rate.end()

    @property
    def face_rate(self) -> FaceRate:
        return self._rate.current


class DetectThenLandmark(TrackKeeping):
    """Shared loop: detect every k frames, carry/smooth the chosen box, place landmarks in it."""

    aligned_input = False

    def __init__(self, tracker: TrackerConfig | None = None) -> None:
        super().__init__(tracker)
        self.timings = {"detect": 0.0, "landmarks": 0.0}  # seconds, summed over calls

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
        t0 = time.perf_counter()
        # one detector call for every due frame of the batch: a batched detector runs them together
        found = self.detect(take(frames, det_idx)) if len(det_idx) else []
        self.timings["detect"] += time.perf_counter() - t0
        detections = dict(zip(det_idx.tolist(), found))
        boxes = np.zeros((n, 4), np.float32)
        has_box = np.zeros(n, bool)
        detected = np.zeros(n, bool)
        for i in range(n):
            if blank[i]:
                box = self._tracker.lose() if due[i] else None
            elif due[i]:
                box = self._tracker.update(detections.get(i, np.zeros((0, 4))), frames.shape[1:3])
                detected[i] = box is not None
            else:
                box = self._tracker.current
            if box is not None:
                boxes[i] = box
                has_box[i] = True
        idx = np.flatnonzero(has_box)
        if len(idx):
            t0 = time.perf_counter()
            lms, ok = self.landmarks(take(frames, idx), boxes[idx])
            self.timings["landmarks"] += time.perf_counter() - t0
            out.landmarks[idx] = np.where(ok[:, None, None], lms, 0.0)
            out.box[idx] = np.where(ok[:, None], boxes[idx], 0.0)
            out.valid[idx] = ok
        out.detected = detected & out.valid
        self._rate.add(out.valid, out.detected, len(det_idx))
        return out


# -- registry ---------------------------------------------------------------------------------

LANDMARK_BACKENDS: dict[str, Callable[..., LandmarkBackend]] = {}

# backend name -> module that registers it (imported on first use)
_BACKEND_MODULES = {
    "template": "extract.faces.template",
    "fan": "extract.faces.fan",
    "mediapipe": "extract.faces.mediapipe_mesh",
}


def import_optional(module: str, missing: str) -> Any:
    """Import a backend's optional dependency; without it, an ImportError saying `missing`
    (what needs it and how to install it)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(missing) from exc


def register_landmark_backend(
    name: str,
) -> Callable[[Callable[..., LandmarkBackend]], Callable[..., LandmarkBackend]]:
    def wrap(factory: Callable[..., LandmarkBackend]) -> Callable[..., LandmarkBackend]:
        LANDMARK_BACKENDS[name] = factory
        return factory

    return wrap


def known_landmark_backends() -> list[str]:
    return sorted(_BACKEND_MODULES)


def parse_landmark_spec(spec: str) -> tuple[str, str | None]:
    """`template` -> ("template", None); `template:s3fd` -> ("template", "s3fd"); names checked."""
    from extract.faces.detectors import known_face_detectors

    name, colon, detector = str(spec).partition(":")
    if name not in _BACKEND_MODULES and name not in LANDMARK_BACKENDS:
        raise KeyError(f"unknown landmark backend {name!r}; known: {known_landmark_backends()}")
    if colon and detector not in known_face_detectors():
        raise KeyError(
            f"unknown face detector {detector!r} in {spec!r}; known: {known_face_detectors()}"
        )
    return name, (detector or None)


def get_landmark_backend(
    name: str,
    device: str = "cpu",
    aligned_input: bool = False,
    detect_every: int = 1,
    **kwargs: Any,
) -> LandmarkBackend:
    """Build backend `name` ("template", "fan", "mediapipe"), or "BACKEND:DETECTOR".

    `aligned_input` says the frames are already face crops (cropped_aligned);
    `detect_every` runs the detector on every k-th frame and carries the box between;
    the detector after a colon ("template:s3fd") is passed as `detector=`.
    """
    name, detector = parse_landmark_spec(name)
    if detector is not None:
        kwargs["detector"] = detector
    if name not in LANDMARK_BACKENDS:
        importlib.import_module(_BACKEND_MODULES[name])
    return LANDMARK_BACKENDS[name](
        device=device, aligned_input=aligned_input, detect_every=detect_every, **kwargs
    )
