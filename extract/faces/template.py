"""`template` backend: the mean 68-point shape placed in a face box, no learned landmarks.

Right for crops that are already aligned (Aff-Wild2 cropped_aligned, where the
face fills the image as MEAN_SHAPE_68 says): the box is the whole image. On full
video frames a face detector gives the box, calibrated per detector to the box
the mean shape fills; then it is a fallback, not a landmark detector.

The detector for full frames defaults to `hog` (dlib's HOG detector, compiled
into the dlib wheel): it needs no download, finds real faces and the synthetic
world's rendered faces (OpenCV's Haar cascade, the earlier default, finds none
in some synthetic videos and costs 2.5 times as much a 720p frame), and with
frames shrunk to 640 pixels costs about 27 ms a 720p frame on a CPU core. On a GPU node,
`template:s3fd` runs face-alignment's S3FD batched over the due frames of each
batch; `template:haar` keeps the cascade for stores made with it. Whatever the
detector, a track where it finds few faces is reported (extract/faces/face_rate.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from data_manifest.face_shape import MEAN_SHAPE_68
from extract.faces.base import DetectThenLandmark, register_landmark_backend
from extract.faces.detectors import FaceDetector, get_face_detector
from extract.faces.tracking import TrackerConfig

DEFAULT_DETECTOR = "hog"


class TemplateLandmarks(DetectThenLandmark):
    """Mean shape in the whole image (aligned input) or in the detector's calibrated box."""

    name = "template"

    def __init__(
        self,
        aligned_input: bool,
        tracker: TrackerConfig | None = None,
        detector: str = DEFAULT_DETECTOR,
        device: str = "cpu",
        detector_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(tracker)
        self.aligned_input = aligned_input  # may be switched per track; read at each batch
        self.detector_name = detector
        self.device = device
        self.detector_kwargs = dict(detector_kwargs or {})
        self._detector: FaceDetector | None = None  # built on the first full frame
        self._whole = get_face_detector("whole-image")

    @property
    def detector(self) -> FaceDetector:
        if self._detector is None:
            self._detector = get_face_detector(
                self.detector_name, device=self.device, **self.detector_kwargs
            )
        return self._detector

    def backend_fields(self) -> dict[str, Any]:
        if self.aligned_input:
            return {"aligned_input": True, "detector": "whole-image"}
        return {"aligned_input": False, **self.detector.fingerprint_fields()}

    def detect(self, frames: np.ndarray) -> list[np.ndarray]:
        detector = self._whole if self.aligned_input else self.detector
        return [d.shape_boxes for d in detector(frames)]

    def landmarks(self, frames: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        size = boxes[:, 2:] - boxes[:, :2]  # (m, 2)
        lms = MEAN_SHAPE_68[None] * size[:, None, :] + boxes[:, None, :2]  # (m, 68, 2)
        return lms.astype(np.float32), np.ones(len(boxes), bool)


@register_landmark_backend("template")
def build_template(
    device: str = "cpu",
    aligned_input: bool = False,
    detect_every: int = 1,
    detector: str = DEFAULT_DETECTOR,
    detector_kwargs: dict[str, Any] | None = None,
    **kwargs: Any,
) -> TemplateLandmarks:
    """Mean-shape landmarks; `detector` finds the box on full frames (see extract/faces/detectors.py)."""
    return TemplateLandmarks(
        aligned_input,
        TrackerConfig(detect_every=detect_every, **kwargs),
        detector=detector,
        device=device,
        detector_kwargs=detector_kwargs,
    )
