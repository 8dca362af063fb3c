"""Landmark geometry: the 68-point shape, normalised, plus distances and angles AU work uses.

Shape features in OpenFace are the landmarks with pose and scale taken out; ours, from the
aligned crop's landmarks, are the 68 points centred on their mean and divided by their RMS
distance from it (136 numbers). The measures after them are in the face's own frame (x along
the line between the eye centres, y perpendicular to it, pointing down the face), distances in
inter-ocular units, angles in radians, so a shift, a scale or an in-plane rotation of the
landmarks changes none of them. `_r` / `_l` are the subject's right / left.
"""

from __future__ import annotations

import numpy as np

N_POINTS = 68
_BROW_R, _BROW_L = list(range(17, 22)), list(range(22, 27))

# name -> what it follows (the AUs it mostly moves with)
MEASURES: tuple[tuple[str, str], ...] = (
    ("brow_inner_r", "inner brow above inner eye corner (AU1 up, AU4 down)"),
    ("brow_inner_l", "inner brow above inner eye corner (AU1 up, AU4 down)"),
    ("brow_outer_r", "outer brow above outer eye corner (AU2)"),
    ("brow_outer_l", "outer brow above outer eye corner (AU2)"),
    ("brow_eye_r", "mean brow above the upper lid (AU1, AU2, AU4)"),
    ("brow_eye_l", "mean brow above the upper lid (AU1, AU2, AU4)"),
    ("brow_gap", "distance between the inner brow ends (AU4 draws them together)"),
    ("eye_open_r", "lid opening (AU6, AU7 narrow it)"),
    ("eye_open_l", "lid opening (AU6, AU7 narrow it)"),
    ("mouth_width", "lip corner to lip corner (AU12, AU15, AU20... )"),
    ("mouth_open_inner", "inner lip gap (AU25, AU26)"),
    ("mouth_open_outer", "outer upper to outer lower lip (AU25, AU26)"),
    ("lip_corner_raise_r", "corner height above the mouth centre (AU12 up, AU15 down)"),
    ("lip_corner_raise_l", "corner height above the mouth centre (AU12 up, AU15 down)"),
    ("nose_upper_lip", "nose base to upper lip (AU10 shortens it)"),
    ("lower_lip_chin", "lower lip to chin (AU17, AU26)"),
    ("brow_slope_r", "angle of the brow against the eye line"),
    ("brow_slope_l", "angle of the brow against the eye line"),
    ("lip_corner_angle_r", "opening angle of the lips at the corner"),
    ("lip_corner_angle_l", "opening angle of the lips at the corner"),
    ("mouth_tilt", "angle of the corner-to-corner line against the eye line (one-sided AUs)"),
)
MEASURE_NAMES: tuple[str, ...] = tuple(name for name, _ in MEASURES)
N_GEOMETRY = 2 * N_POINTS + len(MEASURES)  # 136 + 21 = 157


def normalised_shape(landmarks: np.ndarray) -> np.ndarray:
    """Landmarks (n, 68, 2) -> centred, RMS-scaled shape (n, 136); a degenerate shape gives 0."""
    lm = np.asarray(landmarks, np.float64)
    centred = lm - lm.mean(axis=1, keepdims=True)  # (n, 68, 2)
    scale = np.sqrt((centred**2).sum(-1).mean(-1))  # (n,)
    ok = scale > 1e-9
    out = np.zeros_like(centred)
    out[ok] = centred[ok] / scale[ok, None, None]
    return out.reshape(len(lm), 2 * N_POINTS)


def measures(landmarks: np.ndarray) -> np.ndarray:
    """Landmarks (n, 68, 2) -> the MEASURES (n, 21); frames with coincident eyes give 0."""
    lm = np.asarray(landmarks, np.float64)  # (n, 68, 2)
    eye_r = lm[:, 36:42].mean(1)  # (n, 2)
    eye_l = lm[:, 42:48].mean(1)  # (n, 2)
    axis = eye_l - eye_r  # (n, 2)
    iod = np.linalg.norm(axis, axis=-1)  # (n,)
    ok = iod > 1e-9
    safe = np.where(ok, iod, 1.0)
    ux = axis / safe[:, None]  # (n, 2) along the eyes
    uy = np.stack([-ux[:, 1], ux[:, 0]], -1)  # (n, 2) down the face

    def pt(*idx: int) -> np.ndarray:
        return lm[:, list(idx)].mean(1)  # (n, 2)

    def down(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """How far b lies below a, in inter-ocular units (n,)."""
        return ((b - a) * uy).sum(-1) / safe

    def dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.linalg.norm(b - a, axis=-1) / safe

    def slope(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        d = b - a
        return np.arctan2((d * uy).sum(-1), (d * ux).sum(-1))

    def vertex_angle(v: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        p, q = a - v, b - v
        cross = p[:, 0] * q[:, 1] - p[:, 1] * q[:, 0]
        return np.arctan2(np.abs(cross), (p * q).sum(-1))

    centre = pt(51, 57)
    values = [
        down(pt(21), pt(39)),
        down(pt(22), pt(42)),
        down(pt(17), pt(36)),
        down(pt(26), pt(45)),
        down(pt(*_BROW_R), pt(37, 38)),
        down(pt(*_BROW_L), pt(43, 44)),
        dist(pt(21), pt(22)),
        (dist(pt(37), pt(41)) + dist(pt(38), pt(40))) / 2,
        (dist(pt(43), pt(47)) + dist(pt(44), pt(46))) / 2,
        dist(pt(48), pt(54)),
        dist(pt(62), pt(66)),
        dist(pt(51), pt(57)),
        down(pt(48), centre),
        down(pt(54), centre),
        down(pt(33), pt(51)),
        down(pt(57), pt(8)),
        slope(pt(17), pt(21)),
        slope(pt(22), pt(26)),
        vertex_angle(pt(48), pt(50), pt(58)),
        vertex_angle(pt(54), pt(52), pt(56)),
        slope(pt(48), pt(54)),
    ]
    out = np.stack(values, -1)  # (n, 21)
    out[~ok] = 0.0
    return out


def landmark_geometry(landmarks: np.ndarray) -> np.ndarray:
    """Landmarks (n, 68, 2), any units -> geometry float32 (n, 157): shape (136), MEASURES (21)."""
    lm = np.asarray(landmarks, np.float64)
    if lm.ndim != 3 or lm.shape[1:] != (N_POINTS, 2):
        raise ValueError(f"landmarks must be (n, 68, 2), got {lm.shape}")
    lm = np.nan_to_num(lm)
    return np.concatenate([normalised_shape(lm), measures(lm)], -1).astype(np.float32)
