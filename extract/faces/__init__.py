"""Faces and 68-point landmarks behind one interface with interchangeable backends.

Backends ("template", "fan", "mediapipe") are imported only when asked for.
"""

from extract.faces.base import (
    LANDMARK_BACKENDS,
    FaceBatch,
    LandmarkBackend,
    get_landmark_backend,
    known_landmark_backends,
    register_landmark_backend,
)

__all__ = [
    "LANDMARK_BACKENDS",
    "FaceBatch",
    "LandmarkBackend",
    "get_landmark_backend",
    "known_landmark_backends",
    "register_landmark_backend",
]
