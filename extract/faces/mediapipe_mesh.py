"""`mediapipe` backend: MediaPipe FaceMesh (468 points) mapped to the 68-point scheme.

The legacy `mediapipe.solutions.face_mesh` API carries its weights inside the
wheel, so it needs no download: the real landmark backend for compute nodes
without internet. It ships in mediapipe 0.10.14 .. 0.10.21 (those wheels require
numpy < 2, so they live in their own environment); later 0.10.x wheels dropped it.
With `model_path` (a `face_landmarker.task` file) the Tasks API FaceLandmarker is
used instead, which works with any recent mediapipe.

MediaPipe tracks faces itself, so it runs on every frame (`detect_every` is
accepted for the common interface only). With several faces the track's side
chooses among them exactly as for the other backends.

MESH_TO_68 is the index table: for each of the 68 points (iBUG order) the
FaceMesh vertex at the same anatomical spot. Groups follow the 68-point scheme
(subject's right first):
  jaw 0-16        127 234 132 58 172 150 176 148 152 377 400 379 397 288 361 454 356
                  (right ear level, down the right jaw, chin 152, up the left jaw)
  right brow 17-21  70 63 105 66 107     (outer -> inner)
  left brow 22-26   336 296 334 293 300  (inner -> outer)
  nose bridge 27-30 168 197 5 4          (between the eyes -> tip)
  nostrils 31-35    75 97 2 326 305      (right wing -> subnasale 2 -> left wing)
  right eye 36-41   33 160 158 133 153 144   (outer corner, upper lid x2, inner corner, lower lid x2)
  left eye 42-47    362 385 387 263 373 380  (inner corner, upper lid x2, outer corner, lower lid x2)
  outer lips 48-59  61 39 37 0 267 269 291 405 314 17 84 181 (right corner, upper lip, left corner, lower lip)
  inner lips 60-67  78 82 13 312 308 317 14 87
Checked against MediaPipe's canonical face model (canonical_face_model.obj): after
a similarity fit to MEAN_SHAPE_68 every non-jaw point lies within 0.035 of the
crop size of its 68-point position (jaw within 0.1; the mean jaw is a plain arc).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from extract.faces.base import (
    FaceBatch,
    TrackKeeping,
    blank_frames,
    import_optional,
    register_landmark_backend,
)
from extract.faces.tracking import TrackerConfig, choose_face

INSTALL = 'pip install "mediapipe>=0.10.14,<=0.10.21"  (or pass model_path=face_landmarker.task)'

MESH_TO_68 = np.array(
    [127, 234, 132, 58, 172, 150, 176, 148, 152, 377, 400, 379, 397, 288, 361, 454, 356]
    + [70, 63, 105, 66, 107]
    + [336, 296, 334, 293, 300]
    + [168, 197, 5, 4]
    + [75, 97, 2, 326, 305]
    + [33, 160, 158, 133, 153, 144]
    + [362, 385, 387, 263, 373, 380]
    + [61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181]
    + [78, 82, 13, 312, 308, 317, 14, 87],
    dtype=np.int64,
)
assert MESH_TO_68.shape == (68,) and len(set(MESH_TO_68.tolist())) == 68


def mesh_to_68(mesh: np.ndarray) -> np.ndarray:
    """FaceMesh points (..., >=468, 2) -> 68-point landmarks (..., 68, 2)."""
    return np.asarray(mesh)[..., MESH_TO_68, :]


class _SolutionsMesh:
    """Legacy FaceMesh (weights bundled in the wheel)."""

    def __init__(self, mp: Any, max_faces: int, confidence: float) -> None:
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=False,
            max_num_faces=max_faces,
            refine_landmarks=False,
            min_detection_confidence=confidence,
            min_tracking_confidence=confidence,
        )

    def __call__(self, frame: np.ndarray) -> list[np.ndarray]:
        result = self._mesh.process(np.ascontiguousarray(frame))
        faces = result.multi_face_landmarks or []
        return [np.array([(p.x, p.y) for p in face.landmark], np.float32) for face in faces]

    def close(self) -> None:
        self._mesh.close()


class _TasksMesh:
    """Tasks API FaceLandmarker from a `face_landmarker.task` file."""

    def __init__(self, mp: Any, model_path: str, max_faces: int, confidence: float) -> None:
        from mediapipe.tasks.python import BaseOptions, vision

        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=model_path),
            running_mode=vision.RunningMode.VIDEO,
            num_faces=max_faces,
            min_face_detection_confidence=confidence,
            min_tracking_confidence=confidence,
        )
        self._mp = mp
        self._landmarker = vision.FaceLandmarker.create_from_options(options)
        self._ms = 0

    def __call__(self, frame: np.ndarray) -> list[np.ndarray]:
        image = self._mp.Image(
            image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame)
        )
        self._ms += 40  # timestamps must increase; spacing only tunes MediaPipe's tracking
        result = self._landmarker.detect_for_video(image, self._ms)
        return [np.array([(p.x, p.y) for p in face], np.float32) for face in result.face_landmarks]

    def close(self) -> None:
        self._landmarker.close()


class MediaPipeMeshLandmarks(TrackKeeping):
    """FaceMesh on every frame, the track's face chosen by side, mapped to 68 points (pixels)."""

    name = "mediapipe"

    def __init__(
        self,
        aligned_input: bool = False,
        max_faces: int = 2,
        min_confidence: float = 0.5,
        model_path: str | None = None,
        tracker: TrackerConfig | None = None,
    ) -> None:
        self._mp = import_optional("mediapipe", f"the mediapipe backend needs MediaPipe: {INSTALL}")
        self.aligned_input = aligned_input  # may be switched per track; read at reset()
        self.max_faces = int(max_faces)
        self.min_confidence = float(min_confidence)
        self.model_path = model_path
        if model_path is None and not hasattr(self._mp, "solutions"):
            raise ImportError(
                f"this mediapipe ({getattr(self._mp, '__version__', '?')}) has no bundled FaceMesh; "
                f"{INSTALL}"
            )
        super().__init__(tracker)
        self._mesh: Any = None
        self.reset()

    def _new_mesh(self) -> Any:
        faces = 1 if self.aligned_input else self.max_faces  # an aligned crop holds one face
        if self.model_path is not None:
            return _TasksMesh(self._mp, self.model_path, faces, self.min_confidence)
        return _SolutionsMesh(self._mp, faces, self.min_confidence)

    def reset(self, side: str = "none", track: str | None = None) -> None:
        if self._mesh is not None:
            self._mesh.close()
        self._mesh = self._new_mesh()  # MediaPipe's own tracking state belongs to one track
        super().reset(side, track)

    def fingerprint_fields(self) -> dict[str, Any]:
        return {
            "landmarks": self.name,
            "mediapipe": getattr(self._mp, "__version__", "unknown"),
            "model": "face_mesh(bundled)" if self.model_path is None else self.model_path,
            "max_faces": 1 if self.aligned_input else self.max_faces,
            "min_confidence": self.min_confidence,
            "table": "MESH_TO_68 v1",
        }

    def __call__(self, frames: np.ndarray) -> FaceBatch:
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be (n, H, W, 3) RGB, got {frames.shape}")
        out = FaceBatch.empty(len(frames))
        blank = blank_frames(frames) if len(frames) else np.zeros(0, bool)
        h, w = frames.shape[1:3]
        scale = np.array([w, h], np.float32)
        for i, frame in enumerate(frames):
            if blank[i]:
                self._tracker.lose()
                continue
            faces = [mesh_to_68(m) * scale for m in self._mesh(frame) if len(m) >= 468]
            if not faces:
                self._tracker.lose()
                continue
            lms = np.stack(faces)  # (k, 68, 2)
            boxes = np.concatenate([lms.min(axis=1), lms.max(axis=1)], axis=1)  # (k, 4)
            chosen = choose_face(boxes, self._tracker.side, self._tracker.current)
            k = int(np.argmin(np.abs(boxes - chosen).sum(axis=1)))
            self._tracker.current = boxes[k].astype(np.float32)
            out.valid[i] = True
            out.box[i] = boxes[k]
            out.landmarks[i] = lms[k]
        out.detected = out.valid.copy()  # FaceMesh looks at every frame
        self._rate.add(out.valid, out.detected, int(np.count_nonzero(~blank)))
        return out


@register_landmark_backend("mediapipe")
def build_mediapipe(
    device: str = "cpu",
    aligned_input: bool = False,
    detect_every: int = 1,
    max_faces: int = 2,
    min_confidence: float = 0.5,
    model_path: str | None = None,
) -> MediaPipeMeshLandmarks:
    del device  # MediaPipe's Python wheel runs on the CPU
    return MediaPipeMeshLandmarks(
        aligned_input=aligned_input,
        max_faces=max_faces,
        min_confidence=min_confidence,
        model_path=model_path,
        tracker=TrackerConfig(detect_every=detect_every),
    )
