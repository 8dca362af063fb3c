"""`hog` detector: dlib's HOG + linear SVM frontal-face detector, compiled into the dlib wheel.

The default for full frames with the `template` backend. Its model is part of
the library (no file, no download), it finds real faces and the synthetic
world's rendered faces alike (0.83 to 1.0 of the frames of each track of 8-track
synthetic sets, both faces of the two-face videos, no extra boxes;
scikit-image's astronaut), and on a CPU core it costs
about 6 ms a 256x192 frame and 27 ms a 720p frame shrunk to 640 pixels, against
66 ms for OpenCV's Haar cascade on the full 720p frame in the same run (which finds no face at
all in some synthetic tracks). Its window is 80 pixels, so with `max_side` 640 a
720p frame yields faces from about 160 pixels up; raise `max_side` (slower) for
smaller faces.

Scores: dlib's own threshold (0) misses a quarter of the synthetic faces and
-0.5 finds them, but also a false face on the astronaut's suit (score -0.05,
the face 1.53). So a box counts when it scores at least `threshold` and no less
than `margin` (1.0) below the frame's best box.

A frontal detector: faces turned beyond about 45 degrees are missed, which the
tracker bridges for short turns and the face rate reports for long ones. On a
GPU node the batched `s3fd` detector (`--landmarks template:s3fd` or `fan`) is
the faster and more tolerant choice once its weights are in place.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from extract.faces.base import import_optional
from extract.faces.detectors import (
    BoxCalibration,
    Detections,
    register_face_detector,
    scale_to_max_side,
)

INSTALL = "pip install dlib-bin  (a binary wheel of dlib; or build dlib from source)"

# dlib's square box spans brows to upper lip; the mean shape's box is larger and reaches below
# the chin. Factors fitted as the median over 414 detections in an 8-track synthetic set against
# the renderer's true landmarks (1.179, 1.172, shift -0.073); the vertical shift is set between
# that and scikit-image's astronaut photo measured with FaceMesh (-0.15), so both lie within
# 0.07 of the face size.
HOG_TO_SHAPE_BOX = BoxCalibration(1.18, 1.18, 0.0, -0.10)


class HogFaceDetector:
    """dlib's frontal-face detector on each frame, shrunk to `max_side` first."""

    name = "hog"
    calibration = HOG_TO_SHAPE_BOX

    def __init__(
        self,
        max_side: int | None = 640,
        upsample: int = 0,
        threshold: float = -0.5,
        margin: float = 1.0,
    ) -> None:
        self._dlib = import_optional("dlib", f"the hog face detector needs dlib: {INSTALL}")
        self._detector = self._dlib.get_frontal_face_detector()
        self.max_side = max_side  # longer frame side the detector sees (None: the full frame)
        self.upsample = int(upsample)  # dlib's pyramid up-sampling: finds smaller faces, slower
        self.threshold = float(threshold)  # SVM score a face needs (dlib's default is 0)
        self.margin = float(margin)  # a box this far below the frame's best is a false face

    def fingerprint_fields(self) -> dict[str, Any]:
        return {
            "detector": self.name,
            "dlib": getattr(self._dlib, "__version__", "unknown"),
            "max_side": self.max_side,
            "upsample": self.upsample,
            "threshold": self.threshold,
            "margin": self.margin,
            "shape_box": self.calibration.as_list(),
        }

    def detect_one(self, frame: np.ndarray) -> Detections:
        import cv2

        s = scale_to_max_side(frame.shape[:2], self.max_side)
        image = frame
        if s < 1.0:
            image = cv2.resize(frame, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        rects, scores, _ = self._detector.run(
            np.ascontiguousarray(image), self.upsample, self.threshold
        )
        if not rects:
            return Detections.none()
        boxes = np.array(
            [[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in rects], np.float32
        )  # (k, 4) in the shrunk frame
        scores = np.asarray(scores, np.float32)  # (k,)
        keep = scores >= scores.max() - self.margin
        return Detections.from_boxes(boxes[keep] / s, self.calibration, scores[keep])

    def __call__(self, frames: np.ndarray) -> list[Detections]:
        return [self.detect_one(f) for f in frames]


@register_face_detector("hog")
def build_hog(device: str = "cpu", **kwargs: Any) -> HogFaceDetector:
    del device  # dlib's wheel runs on the CPU
    return HogFaceDetector(**kwargs)
