"""`template` backend: the mean 68-point shape placed in a face box, no learned landmarks.

Right for crops that are already aligned (Aff-Wild2 cropped_aligned, where the
face fills the image as MEAN_SHAPE_68 says): the box is the whole image. On full
video frames the box comes from OpenCV's bundled Haar cascade, which ships with
the wheel and needs no download; then it is a fallback, not a landmark detector.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from data_manifest.face_shape import MEAN_SHAPE_68
from extract.faces.base import DetectThenLandmark, register_landmark_backend
from extract.faces.tracking import TrackerConfig

CASCADE_FILE = "haarcascade_frontalface_default.xml"
# The cascade's square box covers forehead to mouth; the mean shape's box reaches from above the
# brows to below the chin. Width and height factors and a downward shift (fraction of the cascade
# box) calibrated on a frontal face photo (scikit-image's astronaut) against FaceMesh landmarks.
CASCADE_TO_SHAPE_BOX = (1.16, 1.28, 0.09)


class HaarFaceDetector:
    """OpenCV's frontal-face cascade; boxes (k, 4) x0, y0, x1, y1 in pixels, fitted to the mean shape."""

    def __init__(self, min_size_fraction: float = 0.08, min_neighbors: int = 5) -> None:
        import cv2

        path = os.path.join(cv2.data.haarcascades, CASCADE_FILE)
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise RuntimeError(
                f"OpenCV face cascade not found at {path}; reinstall: pip install opencv-python-headless"
            )
        self.min_size_fraction = min_size_fraction
        self.min_neighbors = min_neighbors

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        import cv2

        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        side = max(16, int(self.min_size_fraction * min(gray.shape)))
        found = self._cascade.detectMultiScale(
            gray, scaleFactor=1.1, minNeighbors=self.min_neighbors, minSize=(side, side)
        )
        if len(found) == 0:
            return np.zeros((0, 4), np.float32)
        xywh = np.asarray(found, np.float32).reshape(-1, 4)  # (k, 4) x, y, w, h
        sx, sy, shift = CASCADE_TO_SHAPE_BOX
        cx = xywh[:, 0] + xywh[:, 2] / 2
        cy = xywh[:, 1] + xywh[:, 3] * (0.5 + shift)
        half_w, half_h = xywh[:, 2] * sx / 2, xywh[:, 3] * sy / 2
        return np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)  # (k, 4)


class TemplateLandmarks(DetectThenLandmark):
    """Mean shape in the whole image (aligned input) or in the Haar cascade's box."""

    name = "template"

    def __init__(self, aligned_input: bool, tracker: TrackerConfig | None = None) -> None:
        super().__init__(tracker)
        self.aligned_input = aligned_input  # may be switched per track; read at each batch
        self._detector: HaarFaceDetector | None = None

    def backend_fields(self) -> dict[str, Any]:
        return {
            "aligned_input": self.aligned_input,
            "detector": "whole-image" if self.aligned_input else CASCADE_FILE,
            "cascade_box": None if self.aligned_input else list(CASCADE_TO_SHAPE_BOX),
        }

    def detect(self, frames: np.ndarray) -> list[np.ndarray]:
        if self.aligned_input:
            h, w = frames.shape[1:3]
            return [np.array([[0.0, 0.0, w, h]], np.float32) for _ in range(len(frames))]
        if self._detector is None:
            self._detector = HaarFaceDetector()
        return [self._detector(frame) for frame in frames]

    def landmarks(self, frames: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        size = boxes[:, 2:] - boxes[:, :2]  # (m, 2)
        lms = MEAN_SHAPE_68[None] * size[:, None, :] + boxes[:, None, :2]  # (m, 68, 2)
        return lms.astype(np.float32), np.ones(len(boxes), bool)


@register_landmark_backend("template")
def build_template(
    device: str = "cpu", aligned_input: bool = False, detect_every: int = 1, **kwargs: Any
) -> TemplateLandmarks:
    del device  # runs on the CPU
    return TemplateLandmarks(aligned_input, TrackerConfig(detect_every=detect_every, **kwargs))
