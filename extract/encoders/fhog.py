"""Felzenszwalb HOG (FHOG, the "UoCTTI" variant): 31 numbers per cell, as OpenFace uses.

OpenFace describes a face by dlib's FHOG of a 112x112 aligned crop with 8x8 cells. FHOG folds
the four block normalisations of Dalal-Triggs HOG into one 31-dim cell descriptor (18
contrast-sensitive orientations, 9 contrast-insensitive ones, 4 gradient energies) instead of
36 numbers per block (Felzenszwalb et al., PAMI 2010, found it does as well), and adds the
polarity of an edge, which tells a raised brow from a lowered one: 12 x 12 x 31 = 4464 numbers
for a 112 crop. Two simplifications against dlib's FHOG, for speed and a plain reference: the
grey image instead of the colour channel with the strongest gradient, and each pixel voting
into its own cell instead of bilinearly into four. Our definition, held by both
implementations below:

- the image is grey (luma) float in [0, 1]; gradients are central differences, zero on the
  one-pixel border;
- each pixel votes its gradient magnitude into one of 18 orientations, in the one cell it
  lies in (no spatial interpolation; pixels past the last whole cell are dropped): FHOG's
  "best of 9 axes (every 20 degrees) by |dot|, plus 9 when the dot is negative", with the
  axis found by rounding the angle folded into [0, 180) degrees. An angle exactly between two
  axes (90 degrees: a horizontal edge) goes to the lower axis whichever way the gradient
  points, so the contrast-insensitive bins do not depend on the edge's polarity;
- a cell's energy is the sum over 9 orientations of (h[o] + h[o + 9])^2; each interior cell
  is normalised by the four 2x2 cell blocks it belongs to, values clipped at 0.2;
- per interior cell: 18 sensitive + 9 insensitive features (half the sum over the four
  normalisations) and 4 texture features (0.2357 x the sum of the 18 clipped values under each
  normalisation). Border cells only normalise, so an (h, w)-cell image gives (h-2, w-2, 31).

`fhog` is the vectorised numpy path; `fhog_reference` the plain per-pixel, per-cell loop it
must agree with. `select_fhog` picks one in one place.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

N_FEATURES = 31  # 18 sensitive + 9 insensitive + 4 texture
N_ORIENT = 9
CLIP = 0.2
TEXTURE_GAIN = 0.2357
EPS = 1e-4
IMPLS = ("numpy", "reference")

_PER_RADIAN = N_ORIENT / math.pi  # orientation bins per radian
_UX = np.cos(np.arange(N_ORIENT) * math.pi / N_ORIENT)  # (9,) the 9 axes, every 20 degrees
_UY = np.sin(np.arange(N_ORIENT) * math.pi / N_ORIENT)  # (9,)


def fhog_shape(height: int, width: int, cell: int) -> tuple[int, int, int]:
    """Output shape (h - 2, w - 2, 31) of an image of height x width pixels."""
    h, w = height // cell, width // cell
    if h < 3 or w < 3:
        raise ValueError(f"FHOG needs at least 3x3 cells of {cell} px, got {height}x{width} px")
    return h - 2, w - 2, N_FEATURES


# ---- vectorised -------------------------------------------------------------------------------
def _gradients(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Central differences (n, H, W) -> dx, dy (n, H, W), zero on the one-pixel border."""
    dx = np.zeros_like(images)
    dy = np.zeros_like(images)
    dx[:, 1:-1, 1:-1] = images[:, 1:-1, 2:] - images[:, 1:-1, :-2]
    dy[:, 1:-1, 1:-1] = images[:, 2:, 1:-1] - images[:, :-2, 1:-1]
    return dx, dy


def _cell_histograms(images: np.ndarray, cell: int) -> np.ndarray:
    """Grey images (n, H, W) float64 -> orientation histograms (n, h, w, 18)."""
    n, height, width = images.shape
    h, w = height // cell, width // cell
    dx, dy = _gradients(images)
    dx, dy = dx[:, : h * cell, : w * cell], dy[:, : h * cell, : w * cell]  # (n, hc, wc)
    mag = np.sqrt(dx * dx + dy * dy)  # (n, hc, wc)
    folded = np.mod(np.arctan2(dy, dx), math.pi)  # (n, hc, wc) in [0, pi)
    axis = np.rint(folded * _PER_RADIAN).astype(np.int64) % N_ORIENT  # (n, hc, wc) in 0..8
    against = dx * _UX[axis] + dy * _UY[axis] < 0  # the gradient points away from that axis
    orient = axis + N_ORIENT * against  # (n, hc, wc) in 0..17
    cy = np.arange(h * cell) // cell  # (hc,)
    cx = np.arange(w * cell) // cell  # (wc,)
    index = ((np.arange(n)[:, None, None] * h + cy[None, :, None]) * w + cx[None, None, :]) * (
        2 * N_ORIENT
    ) + orient  # (n, hc, wc)
    hist = np.bincount(index.ravel(), weights=mag.ravel(), minlength=n * h * w * 2 * N_ORIENT)
    return hist.reshape(n, h, w, 2 * N_ORIENT)


def _normalise(hist: np.ndarray) -> np.ndarray:
    """Histograms (n, h, w, 18) -> FHOG (n, h - 2, w - 2, 31)."""
    energy = ((hist[..., :N_ORIENT] + hist[..., N_ORIENT:]) ** 2).sum(-1)  # (n, h, w)
    block = energy[:, :-1, :-1] + energy[:, :-1, 1:] + energy[:, 1:, :-1] + energy[:, 1:, 1:]
    inv = 1.0 / np.sqrt(block + EPS)  # (n, h - 1, w - 1): block with top-left cell (y, x)
    # the four blocks around interior cell (y, x): top-left corners (y,x) (y-1,x) (y,x-1) (y-1,x-1)
    norms = np.stack(
        [inv[:, 1:, 1:], inv[:, :-1, 1:], inv[:, 1:, :-1], inv[:, :-1, :-1]], axis=-1
    )  # (n, h - 2, w - 2, 4)
    inner = hist[:, 1:-1, 1:-1]  # (n, h - 2, w - 2, 18)
    sens = np.minimum(inner[..., :, None] * norms[..., None, :], CLIP)  # (n, h-2, w-2, 18, 4)
    folded = inner[..., :N_ORIENT] + inner[..., N_ORIENT:]  # (n, h - 2, w - 2, 9)
    insens = np.minimum(folded[..., :, None] * norms[..., None, :], CLIP)  # (n, h-2, w-2, 9, 4)
    return np.concatenate(
        [0.5 * sens.sum(-1), 0.5 * insens.sum(-1), TEXTURE_GAIN * sens.sum(-2)], axis=-1
    )  # (n, h - 2, w - 2, 31)


def fhog(images: np.ndarray, cell: int = 8) -> np.ndarray:
    """Grey images (n, H, W) in [0, 1] -> FHOG float32 (n, H//cell - 2, W//cell - 2, 31)."""
    images = np.asarray(images, np.float64)
    if images.ndim != 3:
        raise ValueError(f"images must be (n, H, W), got {images.shape}")
    fhog_shape(images.shape[1], images.shape[2], cell)
    if len(images) == 0:
        return np.zeros((0, *fhog_shape(images.shape[1], images.shape[2], cell)), np.float32)
    return _normalise(_cell_histograms(images, cell)).astype(np.float32)


# ---- plain reference ---------------------------------------------------------------------------
def fhog_reference(images: np.ndarray, cell: int = 8) -> np.ndarray:
    """The same FHOG, one pixel and one cell at a time (slow; the definition in plain code)."""
    images = np.asarray(images, np.float64)
    out_h, out_w, _ = fhog_shape(images.shape[1], images.shape[2], cell)
    h, w = out_h + 2, out_w + 2
    out = np.zeros((len(images), out_h, out_w, N_FEATURES), np.float32)
    for i, img in enumerate(images):
        hist = [[[0.0] * 18 for _ in range(w)] for _ in range(h)]
        for y in range(1, min(h * cell, img.shape[0] - 1)):
            for x in range(1, min(w * cell, img.shape[1] - 1)):
                gx = float(img[y, x + 1]) - float(img[y, x - 1])
                gy = float(img[y + 1, x]) - float(img[y - 1, x])
                axis = round((math.atan2(gy, gx) % math.pi) * _PER_RADIAN) % N_ORIENT
                against = gx * float(_UX[axis]) + gy * float(_UY[axis]) < 0
                orient = axis + N_ORIENT if against else axis
                hist[y // cell][x // cell][orient] += math.sqrt(gx * gx + gy * gy)
        energy = [
            [sum((hist[cy][cx][o] + hist[cy][cx][o + 9]) ** 2 for o in range(9)) for cx in range(w)]
            for cy in range(h)
        ]
        for cy in range(1, h - 1):
            for cx in range(1, w - 1):
                norms = []
                for by, bx in ((cy, cx), (cy - 1, cx), (cy, cx - 1), (cy - 1, cx - 1)):
                    total = energy[by][bx] + energy[by][bx + 1]
                    total += energy[by + 1][bx] + energy[by + 1][bx + 1]
                    norms.append(1.0 / math.sqrt(total + EPS))
                cellhist = hist[cy][cx]
                feat = []
                texture = [0.0] * 4
                for o in range(18):
                    parts = [min(cellhist[o] * nb, CLIP) for nb in norms]
                    feat.append(0.5 * sum(parts))
                    for j in range(4):
                        texture[j] += parts[j]
                for o in range(9):
                    value = cellhist[o] + cellhist[o + 9]
                    feat.append(0.5 * sum(min(value * nb, CLIP) for nb in norms))
                feat.extend(TEXTURE_GAIN * t for t in texture)
                out[i, cy - 1, cx - 1] = feat
    return out


def select_fhog(impl: str) -> Callable[..., np.ndarray]:
    """ "numpy" (default) or "reference" (the plain loop, a real fallback and the test oracle)."""
    if impl not in IMPLS:
        raise ValueError(f"FHOG implementation must be one of {IMPLS}, got {impl!r}")
    return fhog if impl == "numpy" else fhog_reference
