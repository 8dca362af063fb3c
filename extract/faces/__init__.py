"""Faces and 68-point landmarks behind one interface with interchangeable backends and detectors.

Backends ("template", "fan", "mediapipe") and detectors ("hog", "haar", "s3fd",
"whole-image") are imported only when asked for; "BACKEND:DETECTOR" picks both.
"""

from extract.faces.base import (
    LANDMARK_BACKENDS,
    FaceBatch,
    LandmarkBackend,
    get_landmark_backend,
    known_landmark_backends,
    parse_landmark_spec,
    register_landmark_backend,
)
from extract.faces.detectors import (
    FACE_DETECTORS,
    FaceDetector,
    get_face_detector,
    known_face_detectors,
    register_face_detector,
)
from extract.faces.face_rate import FaceRate

__all__ = [
    "FACE_DETECTORS",
    "LANDMARK_BACKENDS",
    "FaceBatch",
    "FaceDetector",
    "FaceRate",
    "LandmarkBackend",
    "get_face_detector",
    "get_landmark_backend",
    "known_face_detectors",
    "known_landmark_backends",
    "parse_landmark_spec",
    "register_face_detector",
    "register_landmark_backend",
]
