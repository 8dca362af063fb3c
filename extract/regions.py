"""AU regions: boxes in the aligned crop, built from the crop's 68 landmarks.

Each region is the bounding box of a few landmarks, padded by multiples of the
inter-ocular distance (so it scales with the face), then kept at least
MIN_REGION_SIZE wide and high and inside the crop. Boxes are (x0, y0, x1, y1) in
[0, 1] crop coordinates. `_r` / `_l` are the subject's right / left (the
subject's right is on the image's left), as in the 68-point scheme.

REGION_AUS says which of the 12 ABAW AUs each region serves; the HGA model's
local queries are these regions. Changing a definition changes REGION_VERSION,
which goes into the face group's fingerprint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from data_manifest.aus import AUS

REGION_VERSION = 1
MIN_REGION_SIZE = 0.06  # smallest box side, as a fraction of the crop


@dataclass(frozen=True)
class RegionSpec:
    name: str  # region name (stored order = REGIONS order)
    points: tuple[int, ...]  # 68-point indices whose bounding box seeds the region
    pad: tuple[float, float, float, float]  # left, top, right, bottom padding in inter-ocular units
    aus: tuple[str, ...]  # ABAW AUs the region serves


def _r(*idx: int) -> tuple[int, ...]:
    return tuple(idx)


REGION_SPECS: tuple[RegionSpec, ...] = (
    RegionSpec("inner_brow_r", _r(19, 20, 21), (0.1, 0.3, 0.1, 0.15), ("AU1", "AU4")),
    RegionSpec("inner_brow_l", _r(22, 23, 24), (0.1, 0.3, 0.1, 0.15), ("AU1", "AU4")),
    RegionSpec("outer_brow_r", _r(17, 18, 19), (0.1, 0.3, 0.1, 0.15), ("AU2",)),
    RegionSpec("outer_brow_l", _r(24, 25, 26), (0.1, 0.3, 0.1, 0.15), ("AU2",)),
    RegionSpec("glabella", _r(21, 22, 27), (0.05, 0.15, 0.05, 0.05), ("AU4",)),
    RegionSpec("upper_lid_r", _r(36, 37, 38, 39), (0.1, 0.15, 0.1, 0.05), ("AU7", "AU6")),
    RegionSpec("upper_lid_l", _r(42, 43, 44, 45), (0.1, 0.15, 0.1, 0.05), ("AU7", "AU6")),
    RegionSpec("cheek_r", _r(36, 39, 40, 41, 31), (0.15, 0.0, 0.0, 0.05), ("AU6", "AU7")),
    RegionSpec("cheek_l", _r(42, 45, 46, 47, 35), (0.0, 0.0, 0.15, 0.05), ("AU6", "AU7")),
    RegionSpec("nose_bridge", _r(27, 28, 29), (0.2, 0.05, 0.2, 0.05), ("AU4", "AU10")),
    RegionSpec(
        "upper_lip", _r(31, 32, 33, 34, 35, 49, 50, 51, 52, 53), (0.05, 0.0, 0.05, 0.05), ("AU10",)
    ),
    RegionSpec(
        "lip_corner_r",
        _r(
            48,
        ),
        (0.2, 0.2, 0.2, 0.2),
        ("AU12", "AU15"),
    ),
    RegionSpec(
        "lip_corner_l",
        _r(
            54,
        ),
        (0.2, 0.2, 0.2, 0.2),
        ("AU12", "AU15"),
    ),
    RegionSpec(
        "lower_lip_chin", _r(55, 56, 57, 58, 59, 7, 8, 9), (0.05, 0.0, 0.05, 0.0), ("AU15", "AU24")
    ),
    RegionSpec("mouth", tuple(range(48, 68)), (0.1, 0.1, 0.1, 0.1), ("AU23", "AU24", "AU25")),
    RegionSpec("jaw", tuple(range(4, 13)), (0.05, 0.0, 0.05, 0.05), ("AU26", "AU25")),
)

REGIONS: tuple[str, ...] = tuple(spec.name for spec in REGION_SPECS)
REGION_AUS: dict[str, tuple[str, ...]] = {spec.name: spec.aus for spec in REGION_SPECS}
N_REGIONS = len(REGIONS)

assert set().union(*REGION_AUS.values()) == set(AUS), "every ABAW AU needs a region"


def _inter_ocular(lm: np.ndarray) -> np.ndarray:
    """(n,) distance between eye centres of (n, 68, 2) landmarks."""
    right = lm[:, 36:42].mean(axis=1)
    left = lm[:, 42:48].mean(axis=1)
    return np.linalg.norm(left - right, axis=-1)


def _fit_inside(lo: np.ndarray, hi: np.ndarray, min_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Grow [lo, hi] to min_size around its centre, then shift (and clip) it into [0, 1]."""
    centre = (lo + hi) / 2
    half = np.maximum((hi - lo) / 2, min_size / 2)
    half = np.minimum(half, 0.5)
    centre = np.clip(centre, half, 1 - half)
    return centre - half, centre + half


def region_boxes_unit(landmarks_unit: np.ndarray) -> np.ndarray:
    """Region boxes (n, R, 4) in [0, 1] from landmarks (n, 68, 2) already in [0, 1] crop units."""
    lm = np.nan_to_num(np.asarray(landmarks_unit, np.float64))  # (n, 68, 2)
    if lm.ndim != 3 or lm.shape[1:] != (68, 2):
        raise ValueError(f"landmarks must be (n, 68, 2), got {lm.shape}")
    iod = _inter_ocular(lm)[:, None]  # (n, 1)
    boxes = np.zeros((len(lm), N_REGIONS, 4), np.float64)  # (n, R, 4)
    for r, spec in enumerate(REGION_SPECS):
        pts = lm[:, list(spec.points)]  # (n, k, 2)
        left, top, right, bottom = spec.pad
        lo = pts.min(axis=1) - iod * np.array([left, top])  # (n, 2)
        hi = pts.max(axis=1) + iod * np.array([right, bottom])  # (n, 2)
        lo = np.clip(lo, 0.0, 1.0)
        hi = np.clip(hi, 0.0, 1.0)
        lo, hi = _fit_inside(lo, hi, MIN_REGION_SIZE)
        boxes[:, r, :2] = lo
        boxes[:, r, 2:] = hi
    return np.clip(boxes, 0.0, 1.0).astype(np.float32)


def region_boxes(crop_landmarks: np.ndarray, crop_size: int) -> np.ndarray:
    """Region boxes (n, R, 4) in [0, 1] from crop landmarks (n, 68, 2) in crop pixels."""
    return region_boxes_unit(np.asarray(crop_landmarks, np.float64) / float(crop_size))


def mean_face_image(size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """A drawn mean-shape face (RGB uint8 (S, S, 3)) and its landmarks (68, 2) in pixels."""
    import cv2

    from data_manifest.face_shape import MEAN_SHAPE_68

    lm = MEAN_SHAPE_68 * size  # (68, 2)
    image = np.full((size, size, 3), 235, np.uint8)
    centre = (int(size * 0.5), int(size * 0.52))
    axes = (int(size * 0.43), int(size * 0.47))
    cv2.ellipse(image, centre, axes, 0, 0, 360, (224, 182, 150), -1, cv2.LINE_AA)
    groups = [
        (range(0, 17), False),
        (range(17, 22), False),
        (range(22, 27), False),
        (range(27, 31), False),
        (range(31, 36), False),
        (range(36, 42), True),
        (range(42, 48), True),
        (range(48, 60), True),
        (range(60, 68), True),
    ]
    for idx, closed in groups:
        pts = np.round(lm[list(idx)]).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(image, [pts], closed, (90, 50, 40), max(1, size // 200), cv2.LINE_AA)
    return image, lm.astype(np.float32)


def draw_regions(image: np.ndarray, landmarks: np.ndarray, out_png: str | os.PathLike) -> str:
    """Draw the region boxes (with names and AUs) and landmarks on an RGB crop; write a PNG."""
    import cv2

    image = np.asarray(image, np.uint8)
    h, w = image.shape[:2]
    scale = max(1.0, 640.0 / max(h, w))  # labels need room
    canvas = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC)
    lm = np.asarray(landmarks, np.float64).reshape(1, 68, 2)
    boxes = region_boxes_unit(lm / np.array([w, h]))[0]  # (R, 4)
    ch, cw = canvas.shape[:2]
    colours = [
        tuple(
            int(c)
            for c in cv2.cvtColor(
                np.uint8([[[int(179 * i / N_REGIONS), 220, 230]]]), cv2.COLOR_HSV2RGB
            )[0, 0]
        )
        for i in range(N_REGIONS)
    ]
    for x, y in lm[0] * scale:
        cv2.circle(canvas, (round(x), round(y)), 2, (255, 255, 255), -1, cv2.LINE_AA)
    font_scale = 0.32 * ch / 640
    for r, name in enumerate(REGIONS):
        x0, y0, x1, y1 = boxes[r] * np.array([cw, ch, cw, ch])
        colour = colours[r]
        cv2.rectangle(
            canvas, (round(x0), round(y0)), (round(x1), round(y1)), colour, 2, cv2.LINE_AA
        )
        label = f"{name} {'/'.join(REGION_AUS[name])}"
        cv2.putText(
            canvas,
            label,
            (round(x0) + 2, round(y0) + 11),
            cv2.FONT_HERSHEY_SIMPLEX,
            font_scale,
            (0, 0, 0),
            3,
            cv2.LINE_AA,
        )
        cv2.putText(
            canvas,
            label,
            (round(x0) + 2, round(y0) + 11),
            cv2.FONT_HERSHEY_SIMPLEX,
            font_scale,
            colour,
            1,
            cv2.LINE_AA,
        )
    out_png = str(out_png)
    parent = os.path.dirname(os.path.abspath(out_png))
    os.makedirs(parent, exist_ok=True)
    if not cv2.imwrite(out_png, cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write image {out_png}")
    return out_png
