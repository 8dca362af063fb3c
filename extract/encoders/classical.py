"""Classical AU features after OpenFace: HOG appearance and landmark geometry.

A visual representation that is not a foundation model, so an ablation can measure what the
foundation model adds. Per frame with a face, from the aligned crop, its 16 AU regions and its
68 aligned landmarks:

- "cls"      (D,) = (4464,): FHOG (fhog.py) of the grey crop resized to 112x112, 8x8 cells:
             12 x 12 interior cells x 31, flattened row-major (y, x, feature). The descriptor
             and crop size OpenFace uses (with the two simplifications fhog.py names); FHOG
             gives 31 numbers per cell where Dalal-Triggs HOG gives 36 per block.
- "regions"  (R, D_r) = (16, 124): FHOG of each AU region (extract/regions.py order),
             resampled (bilinear) from the crop to 32x32 pixels: 2 x 2 interior cells x 31.
             At the default 224 crop most regions span 25-60 px (the mouth and jaw more), so
             32 px is at or a little under their own resolution (as 112 is for the face) and
             still gives a little layout (2 x 2 cells) inside each.
- "geometry" (G,) = (157,): landmark_geometry.py (normalised shape, then 21 named measures).

It runs on the CPU with numpy (no model source, no device); `needs` asks the job for the
batch's region boxes and crop landmarks, both in [0, 1] crop coordinates.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from extract.encoders.base import register_visual_encoder
from extract.encoders.fhog import IMPLS, fhog_shape, select_fhog
from extract.encoders.landmark_geometry import N_GEOMETRY, landmark_geometry

HOG_VERSION = "fhog-luma-hard-v1"  # bump when fhog.py's numbers change
GEOMETRY_VERSION = "geometry-v1"  # bump when landmark_geometry.py's numbers change
FACE_SIZE = 112  # OpenFace's aligned crop side for HOG
CELL = 8
REGION_SIZE = 32
_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as OpenCV and PIL


def definition_fields() -> dict[str, Any]:
    """What defines the numbers (the group fingerprint): the code alone, no model."""
    return {
        "encoder": "classical",
        "hog": HOG_VERSION,
        "face_size": FACE_SIZE,
        "cell": CELL,
        "region_size": REGION_SIZE,
        "geometry": GEOMETRY_VERSION,
    }


def grey(crops: np.ndarray) -> np.ndarray:
    """uint8 RGB (n, S, S, 3) -> luma float32 (n, S, S) in [0, 1]."""
    rgb = crops.astype(np.float32)
    return (rgb[..., 0] * _LUMA[0] + rgb[..., 1] * _LUMA[1] + rgb[..., 2] * _LUMA[2]) / 255.0


def resize_faces(images: np.ndarray, size: int) -> np.ndarray:
    """Grey (n, S, S) -> (n, size, size); area averaging when shrinking, bilinear when growing."""
    import cv2

    if images.shape[1:] == (size, size):
        return images
    mode = cv2.INTER_AREA if images.shape[1] > size else cv2.INTER_LINEAR
    return np.stack([cv2.resize(img, (size, size), interpolation=mode) for img in images])


def sample_regions(images: np.ndarray, rois: np.ndarray, size: int) -> np.ndarray:
    """Boxes (n, R, 4) [0, 1] of grey (n, S, S) -> (n, R, size, size).

    Each box is widened to whole pixels and resized like the face: area averaging when it
    shrinks (the jaw and mouth boxes are 2-4x the patch at a 224 crop; point sampling would
    alias their edges), bilinear when it grows.
    """
    import cv2

    n, height, width = images.shape
    rois = np.asarray(rois, np.float64)  # (n, R, 4) x0, y0, x1, y1
    x0 = np.clip(np.floor(rois[..., 0] * width), 0, width - 2).astype(np.int64)  # (n, R)
    y0 = np.clip(np.floor(rois[..., 1] * height), 0, height - 2).astype(np.int64)
    x1 = np.maximum(np.clip(np.ceil(rois[..., 2] * width), 0, width).astype(np.int64), x0 + 2)
    y1 = np.maximum(np.clip(np.ceil(rois[..., 3] * height), 0, height).astype(np.int64), y0 + 2)
    out = np.empty((n, rois.shape[1], size, size), np.float32)  # (n, R, P, P)
    for i in range(n):
        for r in range(rois.shape[1]):
            box = images[i, y0[i, r] : y1[i, r], x0[i, r] : x1[i, r]]  # (h, w)
            shrink = box.shape[0] >= size and box.shape[1] >= size
            mode = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
            out[i, r] = cv2.resize(box, (size, size), interpolation=mode)
    return out


class ClassicalEncoder:
    """HOG of the face and of its AU regions, and landmark geometry; numpy on the CPU."""

    name = "classical"
    needs = ("rois", "landmarks")  # asked of the job, passed to `encode` as keyword arguments

    def __init__(self, *, impl: str = "numpy", n_regions: int | None = None) -> None:
        from extract.regions import N_REGIONS

        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        self.impl = impl
        self._fhog = select_fhog(impl)
        self.n_regions = int(n_regions or N_REGIONS)

    @property
    def outputs(self) -> dict[str, tuple[int, ...]]:
        """Per-frame output shapes: {"cls": (4464,), "regions": (16, 124), "geometry": (157,)}."""
        face = int(np.prod(fhog_shape(FACE_SIZE, FACE_SIZE, CELL)))
        region = int(np.prod(fhog_shape(REGION_SIZE, REGION_SIZE, CELL)))
        return {"cls": (face,), "regions": (self.n_regions, region), "geometry": (N_GEOMETRY,)}

    def fingerprint_fields(self) -> dict[str, Any]:
        return definition_fields()

    def encode(
        self, crops: np.ndarray, *, rois: np.ndarray | None = None, landmarks=None
    ) -> dict[str, np.ndarray]:
        """Crops uint8 (n, S, S, 3), rois (n, R, 4) and landmarks (n, 68, 2) in [0, 1] crop
        coordinates -> {"cls": (n, 4464), "regions": (n, R, 124), "geometry": (n, 157)}."""
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[-1] != 3 or crops.dtype != np.uint8:
            raise ValueError(f"crops must be uint8 (n, H, W, 3), got {crops.dtype} {crops.shape}")
        if rois is None or landmarks is None:
            raise ValueError("the classical encoder needs the batch's rois and landmarks")
        rois = np.asarray(rois, np.float32)
        landmarks = np.asarray(landmarks, np.float32)
        n = len(crops)
        if rois.shape != (n, self.n_regions, 4) or landmarks.shape != (n, 68, 2):
            raise ValueError(
                f"rois (n, {self.n_regions}, 4) and landmarks (n, 68, 2) expected for n={n}, "
                f"got {rois.shape} and {landmarks.shape}"
            )
        if n == 0:
            return {k: np.zeros((0, *s), np.float32) for k, s in self.outputs.items()}
        images = grey(crops)  # (n, S, S)
        face = self._fhog(resize_faces(images, FACE_SIZE), CELL)  # (n, 12, 12, 31)
        patches = sample_regions(images, rois, REGION_SIZE)  # (n, R, 32, 32)
        flat = patches.reshape(n * self.n_regions, REGION_SIZE, REGION_SIZE)
        regions = self._fhog(flat, CELL).reshape(n, self.n_regions, -1)  # (n, R, 124)
        return {
            "cls": face.reshape(n, -1).astype(np.float32),
            "regions": regions.astype(np.float32),
            "geometry": landmark_geometry(landmarks),  # (n, 157)
        }


@register_visual_encoder("classical")
def load_classical(
    source: str | None = None,
    *,
    device: str = "cpu",
    layer: int | None = None,
    impl: str = "numpy",
) -> ClassicalEncoder:
    """The classical encoder; it has no model, so `source` must be empty. It runs on the CPU
    whatever `device` says, and `layer` (a model setting the job hands every visual encoder,
    for the model-backed ones) does not apply to it."""
    del device, layer
    if source:
        raise ValueError(f"the classical encoder takes no model source, got {source!r}")
    return ClassicalEncoder(impl=impl)
