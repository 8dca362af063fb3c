"""HGA's ROI sampling against plain loops, and the encoder on odd grids."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from train.models.hga import HGA, roi_pool, sincos_2d


def _bilinear_border(grid: np.ndarray, x: float, y: float) -> np.ndarray:
    """Bilinear value at crop point (x, y) of an (h, w, D) token grid, clamped at the border."""
    h, w, _ = grid.shape
    px = min(max(x * w - 0.5, 0.0), w - 1.0)  # token (i, j) centre at ((j + .5)/w, (i + .5)/h)
    py = min(max(y * h - 0.5, 0.0), h - 1.0)
    j0, i0 = int(math.floor(px)), int(math.floor(py))
    j1, i1 = min(j0 + 1, w - 1), min(i0 + 1, h - 1)
    fx, fy = px - j0, py - i0
    top = grid[i0, j0] * (1 - fx) + grid[i0, j1] * fx
    bottom = grid[i1, j0] * (1 - fx) + grid[i1, j1] * fx
    return top * (1 - fy) + bottom * fy


@pytest.mark.parametrize("samples", [1, 2, 3])
@pytest.mark.parametrize("grid", [(4, 4), (3, 5)])
def test_roi_pool_matches_loop(samples, grid):
    rng = np.random.default_rng(samples)
    h, w = grid
    feats = rng.normal(size=(2, h, w, 3))
    lo = rng.uniform(-0.1, 0.7, size=(2, 4, 2))  # some boxes poke outside the crop
    boxes = np.concatenate([lo, lo + rng.uniform(0.05, 0.5, size=(2, 4, 2))], axis=-1)
    got = roi_pool(torch.from_numpy(feats), torch.from_numpy(boxes), samples).numpy()
    for n in range(2):
        for r in range(4):
            x0, y0, x1, y1 = boxes[n, r]
            pts = [
                _bilinear_border(
                    feats[n],
                    x0 + (x1 - x0) * (a + 0.5) / samples,
                    y0 + (y1 - y0) * (b + 0.5) / samples,
                )
                for a in range(samples)
                for b in range(samples)
            ]
            np.testing.assert_allclose(got[n, r], np.mean(pts, axis=0), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("samples", [2, 3])
def test_cell_aligned_box_is_the_crop_mean(samples):
    """A box of samples x samples whole tokens is sampled at their centres: the crop's mean."""
    feats = torch.randn(1, 6, 6, 4, dtype=torch.float64)
    r0, c0 = 1, 2
    box = torch.tensor([[[c0, r0, c0 + samples, r0 + samples]]], dtype=torch.float64) / 6
    got = roi_pool(feats, box, samples=samples)
    crop_mean = feats[0, r0 : r0 + samples, c0 : c0 + samples].reshape(-1, 4).mean(0)
    torch.testing.assert_close(got[0, 0], crop_mean)


def test_sincos_distinguishes_positions():
    xy = torch.tensor([[0.1, 0.2], [0.2, 0.1], [0.1, 0.2]])
    enc = sincos_2d(xy, 16)
    assert enc.shape == (3, 16)
    torch.testing.assert_close(enc[0], enc[2])
    assert (enc[0] - enc[1]).abs().max() > 1e-3


def test_hga_any_grid_and_roi_dependence():
    torch.manual_seed(0)
    hga = HGA(d_patch=8, n_rois=3, d_model=16, heads=2, n_queries=12).eval()
    rois = torch.tensor([[[0.1, 0.1, 0.4, 0.4], [0.5, 0.1, 0.9, 0.4], [0.3, 0.6, 0.7, 0.9]]])
    for h, w in [(1, 1), (2, 3), (16, 16)]:
        out = hga(torch.randn(1, h, w, 8), rois)
        assert out.shape == (1, 16)
    patch = torch.randn(1, 4, 4, 8)
    with torch.no_grad():
        a = hga(patch, rois)
        b = hga(patch, rois.flip(1))
    assert (a - b).abs().max() > 1e-5  # regions are told apart (learned embeddings, positions)
