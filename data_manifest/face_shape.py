"""The mean 68-point face shape (iBUG / Multi-PIE scheme) in a unit square.

One shape is shared by the synthetic face renderer (which draws each AU's effect
where this scheme puts the region), the `template` landmark backend (which places
it in a face box) and the canonical crop of the aligner. Coordinates are (x, y)
in [0, 1] of a square, face-centred crop, image convention (x right, y down);
"right" means the subject's right, which is on the image's left.

Index groups: jaw 0-16, right brow 17-21, left brow 22-26, nose bridge 27-30,
nostrils 31-35, right eye 36-41, left eye 42-47, outer lips 48-59, inner lips 60-67.
"""

from __future__ import annotations

import numpy as np


def _jaw() -> list[tuple[float, float]]:
    theta = np.linspace(0.0, np.pi, 17)
    return [(0.5 - 0.42 * np.cos(t), 0.32 + 0.62 * np.sin(t)) for t in theta]


_POINTS = (
    _jaw()
    + [(0.16, 0.27), (0.22, 0.225), (0.29, 0.21), (0.36, 0.215), (0.43, 0.235)]  # right brow
    + [(0.57, 0.235), (0.64, 0.215), (0.71, 0.21), (0.78, 0.225), (0.84, 0.27)]  # left brow
    + [(0.5, 0.34), (0.5, 0.42), (0.5, 0.50), (0.5, 0.58)]  # nose bridge
    + [(0.42, 0.63), (0.46, 0.645), (0.5, 0.65), (0.54, 0.645), (0.58, 0.63)]  # nostrils
    + [(0.24, 0.37), (0.285, 0.35), (0.335, 0.35), (0.38, 0.375), (0.335, 0.39), (0.285, 0.39)]
    + [(0.62, 0.375), (0.665, 0.35), (0.715, 0.35), (0.76, 0.37), (0.715, 0.39), (0.665, 0.39)]
    + [(0.35, 0.76), (0.40, 0.73), (0.46, 0.715), (0.5, 0.72), (0.54, 0.715), (0.60, 0.73)]
    + [(0.65, 0.76), (0.60, 0.80), (0.55, 0.815), (0.5, 0.82), (0.45, 0.815), (0.40, 0.80)]
    + [(0.37, 0.76), (0.45, 0.745), (0.5, 0.747), (0.55, 0.745), (0.63, 0.76)]
    + [(0.55, 0.775), (0.5, 0.777), (0.45, 0.775)]
)

MEAN_SHAPE_68: np.ndarray = np.asarray(_POINTS, dtype=np.float32)  # (68, 2)
assert MEAN_SHAPE_68.shape == (68, 2)

RIGHT_EYE = slice(36, 42)
LEFT_EYE = slice(42, 48)
OUTER_LIPS = slice(48, 60)


def anchor_points(landmarks: np.ndarray) -> np.ndarray:
    """Right-eye centre, left-eye centre and mouth centre of (..., 68, 2) landmarks -> (..., 3, 2)."""
    lm = np.asarray(landmarks, dtype=np.float32)
    return np.stack(
        [
            lm[..., RIGHT_EYE, :].mean(-2),
            lm[..., LEFT_EYE, :].mean(-2),
            lm[..., OUTER_LIPS, :].mean(-2),
        ],
        axis=-2,
    )


def shape_in_box(box: np.ndarray) -> np.ndarray:
    """The mean shape placed in an (x0, y0, x1, y1) box -> (68, 2)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return MEAN_SHAPE_68 * np.array([x1 - x0, y1 - y0], np.float32) + np.array([x0, y0], np.float32)
