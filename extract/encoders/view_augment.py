"""Augmented local views of a face crop: random resized crops, flips and small rotations.

The ABAW8 system sees each face globally and through local views made by random crops, flips
and rotations. At extraction every frame gets K such views, each encoded by the same model, so
the trainer can draw among them (train/models/local_views.py) without re-running the encoder.

A view is a square crop covering `area` of the image (side sqrt(area) * S), centred anywhere
it fits, mirrored left-right with probability `flip_p` and rotated by an angle within
+-`max_angle` degrees, resampled back to S x S (bilinear, edges replicated). Its parameters come
from a generator seeded by (seed, crc32(track id), frame index), so a rerun, a shard or a resumed
job draws exactly the same views, and two frames draw different ones.

Conventions: pixel i has its centre at coordinate i; a view's 2 x 3 matrix maps an output pixel
(x, y, 1) to the source point it samples. `warp_views` (torch, one grid_sample over all views)
is the fast path; `warp_views_reference` (numpy, one view at a time) is the plain reference.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class ViewAugment:
    """How local views are drawn; `fields()` goes into the store's fingerprint."""

    views: int = 4  # K views per frame
    seed: int = 0
    area: tuple[float, float] = (0.6, 0.9)  # crop area as a fraction of the image
    flip_p: float = 0.5
    max_angle: float = 10.0  # degrees

    def __post_init__(self) -> None:
        if self.views < 1:
            raise ValueError(f"local views must be >= 1, got {self.views}")
        lo, hi = self.area
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"view area must satisfy 0 < lo <= hi <= 1, got {self.area}")

    def fields(self) -> dict:
        out = asdict(self)
        out["area"] = list(self.area)
        out["rule"] = "crop-flip-rotate-v1"
        return out

    def params(self, track_id: str, frame_index: int) -> np.ndarray:
        """(K, 5) float64 [area, cx, cy, flip, angle]: cx, cy the crop centre as a fraction of
        the side, flip 0 or 1, angle in degrees; the same for the same (seed, track, frame)."""
        key = [int(self.seed), zlib.crc32(str(track_id).encode("utf-8")), int(frame_index)]
        rng = np.random.default_rng(np.random.SeedSequence(key))
        k = self.views
        area = rng.uniform(self.area[0], self.area[1], k)
        half = np.sqrt(area) / 2.0  # half side as a fraction of the image side
        cx = rng.uniform(half, 1.0 - half)
        cy = rng.uniform(half, 1.0 - half)
        flip = (rng.random(k) < self.flip_p).astype(np.float64)
        angle = rng.uniform(-self.max_angle, self.max_angle, k)
        return np.stack([area, cx, cy, flip, angle], axis=1)

    def matrices(self, track_ids, frame_indices, size: int) -> np.ndarray:
        """Per frame (n,) track ids and frame indices -> (n, K, 2, 3) float64 view matrices."""
        mats = [
            view_matrices(self.params(t, int(f)), size) for t, f in zip(track_ids, frame_indices)
        ]
        return np.stack(mats) if mats else np.zeros((0, self.views, 2, 3))


def view_matrices(params: np.ndarray, size: int) -> np.ndarray:
    """(K, 5) view parameters -> (K, 2, 3): output pixel (x, y, 1) -> source point.

    src = centre + R(angle) @ F(flip) @ (side / S) * (out - c), with c = (S - 1) / 2 the image
    centre, side = sqrt(area) * S and F the mirror x -> -x."""
    area, cx, cy, flip, angle = (params[:, i] for i in range(5))
    scale = np.sqrt(area)  # side / S
    theta = np.deg2rad(angle)
    cos, sin = np.cos(theta), np.sin(theta)
    sx = np.where(flip > 0.5, -1.0, 1.0) * scale
    c = (size - 1) / 2.0
    a = np.zeros((len(params), 2, 3))
    a[:, 0, 0], a[:, 0, 1] = cos * sx, -sin * scale
    a[:, 1, 0], a[:, 1, 1] = sin * sx, cos * scale
    centre = np.stack([cx * size - 0.5, cy * size - 0.5], axis=1)  # (K, 2) pixel coordinates
    a[:, :, 2] = centre - c * (a[:, :, 0] + a[:, :, 1])
    return a


def warp_views(pixels, matrices):
    """pixels (B, C, S, S) float, matrices (B, K, 2, 3) -> (B, K, C, S, S): every view of every
    image in one bilinear grid_sample, edges replicated."""
    import torch
    import torch.nn.functional as F

    b, c, s, _ = pixels.shape
    k = matrices.shape[1]
    mats = torch.as_tensor(matrices, dtype=torch.float32, device=pixels.device)  # (B, K, 2, 3)
    coords = torch.arange(s, dtype=torch.float32, device=pixels.device)
    ys, xs = torch.meshgrid(coords, coords, indexing="ij")
    base = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1)  # (S, S, 3)
    src = torch.einsum("hwj,bkij->bkhwi", base, mats)  # (B, K, S, S, 2) source pixels
    grid = (2.0 * src + 1.0) / s - 1.0  # pixel centres -> align_corners=False coordinates
    images = pixels[:, None].expand(b, k, c, s, s).reshape(b * k, c, s, s)
    out = F.grid_sample(
        images.float(),
        grid.reshape(b * k, s, s, 2),
        mode="bilinear",
        padding_mode="border",
        align_corners=False,
    )  # (B*K, C, S, S)
    return out.view(b, k, c, s, s).to(pixels.dtype)


def warp_views_reference(image: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """One image (C, S, S) and its (K, 2, 3) matrices -> (K, C, S, S), view by view: sample each
    output pixel's source point bilinearly, coordinates clamped to the image (edges replicated)."""
    c, s, _ = image.shape
    ys, xs = np.mgrid[0:s, 0:s].astype(np.float64)
    out = np.empty((len(matrices), c, s, s), np.float64)
    for v, m in enumerate(matrices):
        sx = np.clip(m[0, 0] * xs + m[0, 1] * ys + m[0, 2], 0, s - 1)
        sy = np.clip(m[1, 0] * xs + m[1, 1] * ys + m[1, 2], 0, s - 1)
        x0 = np.minimum(np.floor(sx).astype(int), s - 1)
        y0 = np.minimum(np.floor(sy).astype(int), s - 1)
        x1, y1 = np.minimum(x0 + 1, s - 1), np.minimum(y0 + 1, s - 1)
        wx, wy = sx - x0, sy - y0
        out[v] = (
            image[:, y0, x0] * (1 - wx) * (1 - wy)
            + image[:, y0, x1] * wx * (1 - wy)
            + image[:, y1, x0] * (1 - wx) * wy
            + image[:, y1, x1] * wx * wy
        )
    return out
