"""`haar` detector: OpenCV's bundled frontal-face Haar cascade, one frame at a time on the CPU.

It ships with the OpenCV wheel, so it needs no download, but it is slow on full
frames (66-96 ms a 720p frame in bench/results/extract.md, 2.5x HOG) and misses
many faces, the synthetic world's among them; `hog` is the default for full
frames, and this one stays selectable (`--landmarks template:haar`) for stores
made with it.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from extract.faces.detectors import (
    BoxCalibration,
    Detections,
    register_face_detector,
    scale_to_max_side,
)

CASCADE_FILE = "haarcascade_frontalface_default.xml"
# The cascade's square box covers forehead to mouth; the mean shape's box reaches from above the
# brows to below the chin. Width and height factors and a downward shift (fraction of the cascade
# box) calibrated on a frontal face photo (scikit-image's astronaut) against FaceMesh landmarks.
CASCADE_TO_SHAPE_BOX = BoxCalibration(1.16, 1.28, 0.0, 0.09)


class HaarFaceDetector:
    """OpenCV's frontal-face cascade on each frame; faces smaller than `min_size_fraction` are skipped."""

    name = "haar"
    calibration = CASCADE_TO_SHAPE_BOX

    def __init__(
        self, min_size_fraction: float = 0.08, min_neighbors: int = 5, max_side: int | None = None
    ) -> None:
        import cv2

        path = os.path.join(cv2.data.haarcascades, CASCADE_FILE)
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise RuntimeError(
                f"OpenCV face cascade not found at {path}; reinstall: pip install opencv-python-headless"
            )
        self.min_size_fraction = min_size_fraction
        self.min_neighbors = min_neighbors
        self.max_side = max_side  # frames are shrunk to this longer side before detection

    def fingerprint_fields(self) -> dict[str, Any]:
        return {
            "detector": self.name,
            "cascade": CASCADE_FILE,
            "min_size_fraction": self.min_size_fraction,
            "min_neighbors": self.min_neighbors,
            "max_side": self.max_side,
            "shape_box": self.calibration.as_list(),
        }

    def boxes(self, frame: np.ndarray) -> np.ndarray:
        """One RGB frame (H, W, 3) -> (k, 4) cascade boxes x0, y0, x1, y1 in source pixels."""
        import cv2

        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        s = scale_to_max_side(gray.shape, self.max_side)
        if s < 1.0:
            gray = cv2.resize(gray, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        side = max(16, int(self.min_size_fraction * min(gray.shape)))
        found = self._cascade.detectMultiScale(
            gray, scaleFactor=1.1, minNeighbors=self.min_neighbors, minSize=(side, side)
        )
        if len(found) == 0:
            return np.zeros((0, 4), np.float32)
        xywh = np.asarray(found, np.float32).reshape(-1, 4) / s  # (k, 4) x, y, w, h
        return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)

    def __call__(self, frames: np.ndarray) -> list[Detections]:
        return [Detections.from_boxes(self.boxes(f), self.calibration) for f in frames]


@register_face_detector("haar")
def build_haar(device: str = "cpu", **kwargs: Any) -> HaarFaceDetector:
    del device  # runs on the CPU
    return HaarFaceDetector(**kwargs)
