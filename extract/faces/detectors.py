"""Face detectors behind one small contract, and the registry that finds them.

A detector takes a batch of RGB frames and returns, per frame, the boxes of the
faces it sees, each in two conventions:

- `boxes`: the detector's own box (what its landmark network, if any, expects);
- `shape_boxes`: the box the mean 68-point shape fills (MEAN_SHAPE_68 placed in it
  lands on the face), from a per-detector calibration of the detector's box.

Detectors see whole batches: a batched detector (S3FD on a GPU) runs one forward
pass for all frames of a call; per-frame detectors (Haar, HOG) loop inside.

| name | where its weights come from | batched | runs on |
|---|---|---|---|
| whole-image | none: the frame is the face (aligned crops) | yes | - |
| hog | compiled into dlib (the `dlib-bin` wheel) | no | CPU |
| haar | OpenCV's bundled cascade (the OpenCV wheel) | no | CPU |
| s3fd | face-alignment's S3FD file in the torch hub cache | yes | GPU / CPU |
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class BoxCalibration:
    """Detector box -> mean-shape box: scale width and height, shift the centre (box fractions)."""

    width: float = 1.0  # shape box width / detector box width
    height: float = 1.0  # shape box height / detector box height
    shift_x: float = 0.0  # centre moves by this fraction of the detector box width
    shift_y: float = 0.0  # centre moves by this fraction of the detector box height

    def apply(self, boxes: np.ndarray) -> np.ndarray:
        """(k, 4) x0, y0, x1, y1 -> (k, 4) float32."""
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]  # (k,)
        cx = (boxes[:, 0] + boxes[:, 2]) / 2 + self.shift_x * w
        cy = (boxes[:, 1] + boxes[:, 3]) / 2 + self.shift_y * h
        half_w, half_h = self.width * w / 2, self.height * h / 2
        return np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)

    def as_list(self) -> list[float]:
        return [self.width, self.height, self.shift_x, self.shift_y]


@dataclass
class Detections:
    """One frame's faces: (k, 4) boxes in source pixels, k may be 0."""

    boxes: np.ndarray  # (k, 4) float32, the detector's own box
    shape_boxes: np.ndarray  # (k, 4) float32, the box the mean 68-point shape fills
    scores: np.ndarray  # (k,) float32, 1.0 where the detector gives none

    @classmethod
    def none(cls) -> Detections:
        return cls(
            np.zeros((0, 4), np.float32), np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        )

    @classmethod
    def from_boxes(
        cls, boxes: np.ndarray, calibration: BoxCalibration, scores: np.ndarray | None = None
    ) -> Detections:
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        scores = (
            np.ones(len(boxes), np.float32) if scores is None else np.asarray(scores, np.float32)
        )
        return cls(boxes, calibration.apply(boxes), scores)

    def __len__(self) -> int:
        return len(self.boxes)


@runtime_checkable
class FaceDetector(Protocol):
    name: str
    calibration: BoxCalibration

    def __call__(self, frames: np.ndarray) -> list[Detections]:
        """frames uint8 (m, H, W, 3) RGB -> m Detections."""

    def fingerprint_fields(self) -> dict[str, Any]:
        """Everything that changes the boxes (detector, weights, options)."""


def scale_to_max_side(frames_hw: tuple[int, int], max_side: int | None) -> float:
    """Factor (<= 1) that brings the longer side of a frame down to `max_side` (None: 1)."""
    if not max_side:
        return 1.0
    return min(1.0, float(max_side) / max(frames_hw))


class WholeImageDetector:
    """Aligned crops: the face is the image (detectors miss faces that fill the frame)."""

    name = "whole-image"
    calibration = BoxCalibration()

    def __call__(self, frames: np.ndarray) -> list[Detections]:
        h, w = frames.shape[1:3]
        box = np.array([[0.0, 0.0, w, h]], np.float32)
        return [Detections.from_boxes(box, self.calibration) for _ in range(len(frames))]

    def fingerprint_fields(self) -> dict[str, Any]:
        return {"detector": self.name}


# -- registry ---------------------------------------------------------------------------------

FACE_DETECTORS: dict[str, Callable[..., FaceDetector]] = {}

# detector name -> module that registers it (imported on first use: dlib, OpenCV, torch stay
# unimported until asked for)
_DETECTOR_MODULES = {
    "whole-image": "extract.faces.detectors",
    "hog": "extract.faces.hog",
    "haar": "extract.faces.haar",
    "s3fd": "extract.faces.s3fd",
}


def register_face_detector(
    name: str,
) -> Callable[[Callable[..., FaceDetector]], Callable[..., FaceDetector]]:
    def wrap(factory: Callable[..., FaceDetector]) -> Callable[..., FaceDetector]:
        FACE_DETECTORS[name] = factory
        return factory

    return wrap


def known_face_detectors() -> list[str]:
    return sorted(_DETECTOR_MODULES)


def get_face_detector(name: str, device: str = "cpu", **kwargs: Any) -> FaceDetector:
    """Build detector `name` (see `known_face_detectors()`); kwargs go to its factory."""
    if name not in FACE_DETECTORS:
        if name not in _DETECTOR_MODULES:
            raise KeyError(f"unknown face detector {name!r}; known: {known_face_detectors()}")
        importlib.import_module(_DETECTOR_MODULES[name])
    return FACE_DETECTORS[name](device=device, **kwargs)


@register_face_detector("whole-image")
def build_whole_image(device: str = "cpu") -> WholeImageDetector:
    del device
    return WholeImageDetector()
