"""Intersection over union of AU region boxes, vectorised over faces and regions.

Boxes are (x0, y0, x1, y1) with x0 <= x1, y0 <= y1 (the layout of extract.regions).
Two empty boxes (zero area both) have no defined overlap: their IoU is NaN, so a
mean over faces can leave them out instead of counting them as a match or a miss.
"""

from __future__ import annotations

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a (..., 4) and b (..., 4) (broadcast against each other) -> (...)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    lo = np.maximum(a[..., :2], b[..., :2])  # (..., 2)
    hi = np.minimum(a[..., 2:], b[..., 2:])  # (..., 2)
    inter = np.prod(np.clip(hi - lo, 0.0, None), axis=-1)  # (...)
    area_a = np.prod(np.clip(a[..., 2:] - a[..., :2], 0.0, None), axis=-1)  # (...)
    area_b = np.prod(np.clip(b[..., 2:] - b[..., :2], 0.0, None), axis=-1)  # (...)
    union = area_a + area_b - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), np.nan)


def region_iou(template: np.ndarray, detected: np.ndarray) -> np.ndarray:
    """Per face and region IoU (n, R) of template boxes (R, 4) against detected boxes (n, R, 4)."""
    detected = np.asarray(detected, np.float64)
    if detected.ndim != 3 or detected.shape[-1] != 4:
        raise ValueError(f"detected boxes must be (n, R, 4), got {detected.shape}")
    template = np.asarray(template, np.float64)
    if template.shape != detected.shape[1:]:
        raise ValueError(f"template boxes {template.shape} do not match {detected.shape[1:]}")
    return box_iou(template[None], detected)
