"""Face alignment: a similarity transform taking each face to one canonical square crop.

The anchors are the two eye centres and the mouth centre (`anchor_points`); their
canonical spots are those of MEAN_SHAPE_68 scaled to the crop size, the same
geometry the synthetic renderer and Aff-Wild2's aligned crops use. A similarity
(rotation, uniform scale, translation) keeps the face's proportions, so AU
regions defined on crop landmarks mean the same thing in every frame.
"""

from __future__ import annotations

import numpy as np

from data_manifest.face_shape import MEAN_SHAPE_68, anchor_points


def canonical_anchors(crop_size: int) -> np.ndarray:
    """(3, 2) right-eye, left-eye and mouth centres of the mean shape in an S x S crop (pixels)."""
    return anchor_points(MEAN_SHAPE_68) * float(crop_size)


def similarity_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity src (n, K, 2) -> dst (K, 2) as affines (n, 2, 3).

    Rows whose source points have no spread (or are not finite) get an all-zero affine.
    """
    src = np.asarray(src, np.float64)  # (n, K, 2)
    dst = np.asarray(dst, np.float64)  # (K, 2)
    mu_s = src.mean(axis=1, keepdims=True)  # (n, 1, 2)
    mu_d = dst.mean(axis=0)  # (2,)
    s = src - mu_s  # (n, K, 2)
    d = dst - mu_d  # (K, 2)
    norm = (s**2).sum(axis=(1, 2))  # (n,)
    a_num = (s[..., 0] * d[:, 0] + s[..., 1] * d[:, 1]).sum(axis=1)  # (n,)
    b_num = (s[..., 0] * d[:, 1] - s[..., 1] * d[:, 0]).sum(axis=1)  # (n,)
    ok = np.isfinite(norm) & (norm > 1e-9)
    safe = np.where(ok, norm, 1.0)
    a = np.where(ok, a_num / safe, 0.0)  # scale * cos
    b = np.where(ok, b_num / safe, 0.0)  # scale * sin
    rot = np.stack([np.stack([a, -b], -1), np.stack([b, a], -1)], axis=1)  # (n, 2, 2)
    t = mu_d[None] - np.einsum("nij,nj->ni", rot, mu_s[:, 0])  # (n, 2)
    affine = np.concatenate([rot, t[..., None]], axis=2)  # (n, 2, 3)
    affine[~ok] = 0.0
    return affine.astype(np.float32)


def crop_affine(landmarks: np.ndarray, crop_size: int) -> np.ndarray:
    """Source -> crop affines (n, 2, 3) from landmarks (n, 68, 2) in source pixels."""
    lm = np.asarray(landmarks, np.float32)
    if lm.ndim != 3 or lm.shape[1:] != (68, 2):
        raise ValueError(f"landmarks must be (n, 68, 2), got {lm.shape}")
    return similarity_from_points(anchor_points(lm), canonical_anchors(crop_size))


def map_points(points: np.ndarray, affines: np.ndarray) -> np.ndarray:
    """Apply affines (n, 2, 3) to points (n, K, 2) -> (n, K, 2)."""
    pts = np.asarray(points, np.float32)
    aff = np.asarray(affines, np.float32)
    return np.einsum("nij,nkj->nki", aff[:, :, :2], pts) + aff[:, None, :, 2]


def invert_affine(affines: np.ndarray) -> np.ndarray:
    """Inverse of invertible affines (n, 2, 3) (crop -> source); singular rows give zeros."""
    aff = np.asarray(affines, np.float64)
    lin = aff[:, :, :2]  # (n, 2, 2)
    det = np.linalg.det(lin)  # (n,)
    ok = np.abs(det) > 1e-12
    inv = np.zeros_like(lin)
    inv[ok] = np.linalg.inv(lin[ok])
    t = -np.einsum("nij,nj->ni", inv, aff[:, :, 2])  # (n, 2)
    return np.concatenate([inv, t[..., None]], axis=2).astype(np.float32)


def warp_crops(frames: np.ndarray, affines: np.ndarray, size: int) -> np.ndarray:
    """Warp frames (n, H, W, 3) uint8 into (n, S, S, 3) crops with source -> crop affines."""
    import cv2

    frames = np.asarray(frames)
    out = np.zeros((len(frames), size, size, 3), np.uint8)  # (n, S, S, 3)
    for i, (frame, aff) in enumerate(zip(frames, np.asarray(affines, np.float32))):
        if not np.any(aff[:, :2]):
            continue  # no face: black crop
        out[i] = cv2.warpAffine(
            np.ascontiguousarray(frame),
            aff,
            (size, size),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(0, 0, 0),
        )
    return out
