"""HGA: hierarchical (local ROI <-> global patch) attention over one frame's patch-token grid.

AUs live in small facial regions, while a patch grid spreads each region over a few tokens and
the context (the other regions, head pose) over all of them. Per frame:

1. ROI tokens: each AU region box (from landmarks) is sampled bilinearly on the patch grid
   (`roi_pool`: s x s points inside the box, averaged; no torchvision), projected, plus a learned
   embedding per region and the position encoding of the box centre.
2. Local -> global: ROI tokens cross-attend to all patch tokens (with a 2-D sinusoidal position
   encoding, defined for any grid size, so pooled grids work).
3. AU queries (one learned query per AU) attend to the aligned ROI tokens; their outputs are
   averaged (or flattened) into one embedding per frame.

Inputs are float patch tokens; int8 stores are dequantised by the reader. An input LayerNorm
makes the block indifferent to the token scale.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def roi_pool(feats: torch.Tensor, boxes: torch.Tensor, samples: int = 2) -> torch.Tensor:
    """Mean of samples x samples bilinear samples inside each box.

    feats: (N, h, w, D) tokens on a grid covering the crop; boxes: (N, R, 4) (x0, y0, x1, y1) in
    [0, 1] crop coordinates, where token (i, j) covers [j/w, (j+1)/w] x [i/h, (i+1)/h].
    Sample points are the centres of a samples x samples subdivision of the box; points outside
    the grid take the border value. -> (N, R, D)
    """
    n, h, w, dim = feats.shape
    r = boxes.shape[1]
    frac = (torch.arange(samples, device=feats.device, dtype=feats.dtype) + 0.5) / samples  # (s,)
    x0, y0, x1, y1 = boxes.to(feats.dtype).unbind(-1)  # (N, R) each
    xs = x0[..., None] + (x1 - x0)[..., None] * frac  # (N, R, s)
    ys = y0[..., None] + (y1 - y0)[..., None] * frac  # (N, R, s)
    gx = xs[:, :, None, :].expand(n, r, samples, samples)  # (N, R, s, s) row = y, col = x
    gy = ys[:, :, :, None].expand(n, r, samples, samples)
    grid = torch.stack([gx, gy], dim=-1).reshape(n, r, samples * samples, 2) * 2 - 1
    sampled = F.grid_sample(
        feats.permute(0, 3, 1, 2),  # (N, D, h, w)
        grid,  # (N, R, s*s, 2) in [-1, 1]
        mode="bilinear",
        padding_mode="border",
        align_corners=False,
    )  # (N, D, R, s*s)
    return sampled.mean(-1).transpose(1, 2)  # (N, R, D)


def sincos_2d(xy: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal encoding of continuous (x, y) in [0, 1]: (..., 2) -> (..., dim)."""
    quarter = max(1, dim // 4)
    freqs = torch.exp(
        torch.arange(quarter, device=xy.device, dtype=xy.dtype) * (-math.log(100.0) / quarter)
    )  # (dim/4,)
    ang = xy[..., :, None] * freqs * (2 * math.pi)  # (..., 2, dim/4)
    enc = torch.cat([ang.sin(), ang.cos()], dim=-1).flatten(-2)  # (..., 4 * dim/4)
    return F.pad(enc, (0, dim - enc.shape[-1]))


def grid_centres(h: int, w: int, device, dtype) -> torch.Tensor:
    """Token centres of an h x w grid in crop coordinates: (h*w, 2) as (x, y)."""
    ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) / h
    xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) / w
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1).reshape(h * w, 2)


class _CrossBlock(nn.Module):
    """Pre-norm cross-attention + MLP, both residual: queries (N, Q, d) over keys (N, K, d)."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.nq, self.nk = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.nm = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        k = self.nk(kv)
        q = q + self.attn(self.nq(q), k, k, need_weights=False)[0]
        return q + self.mlp(self.nm(q))


class HGA(nn.Module):
    """Per-frame spatial encoder: patch (N, h, w, Dp) and rois (N, R, 4) -> (N, out_dim).

    Args:
        d_patch: patch token width Dp.
        n_rois: number of AU regions R (learned region embeddings).
        d_model: attention width.
        heads: attention heads.
        layers: ROI -> patch cross-attention blocks.
        n_queries: AU queries pooling the ROI tokens (12: one per AU).
        samples: bilinear sample points per box side for ROI pooling.
        pool: "mean" over AU query outputs (out_dim = d_model) or "flat" (n_queries * d_model).
        dropout: attention dropout.
    """

    def __init__(
        self,
        d_patch: int,
        n_rois: int,
        d_model: int = 128,
        heads: int = 4,
        layers: int = 1,
        n_queries: int = 12,
        samples: int = 2,
        pool: str = "mean",
        dropout: float = 0.0,
    ):
        super().__init__()
        if pool not in ("mean", "flat"):
            raise ValueError(f"HGA pool must be 'mean' or 'flat', got {pool!r}")
        self.samples, self.pool, self.d_model = samples, pool, d_model
        self.in_norm = nn.LayerNorm(d_patch)
        self.patch_proj = nn.Linear(d_patch, d_model)
        self.roi_proj = nn.Linear(d_patch, d_model)
        self.region_emb = nn.Parameter(torch.randn(n_rois, d_model) * 0.02)
        self.blocks = nn.ModuleList(_CrossBlock(d_model, heads, dropout) for _ in range(layers))
        self.queries = nn.Parameter(torch.randn(n_queries, d_model) * 0.02)
        self.au_pool = _CrossBlock(d_model, heads, dropout)
        self.out_norm = nn.LayerNorm(d_model)
        self.out_dim = d_model * (n_queries if pool == "flat" else 1)

    def forward(self, patch: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        n, h, w, _ = patch.shape
        p = self.in_norm(patch)  # (N, h, w, Dp)
        rois = rois.to(p.dtype)
        roi = self.roi_proj(roi_pool(p, rois, self.samples))  # (N, R, d)
        centre = torch.stack(
            [(rois[..., 0] + rois[..., 2]) / 2, (rois[..., 1] + rois[..., 3]) / 2], dim=-1
        )  # (N, R, 2)
        roi = roi + self.region_emb + sincos_2d(centre, self.d_model)
        pos = sincos_2d(grid_centres(h, w, p.device, p.dtype), self.d_model)  # (h*w, d)
        kv = self.patch_proj(p.reshape(n, h * w, -1)) + pos  # (N, h*w, d)
        for block in self.blocks:
            roi = block(roi, kv)  # (N, R, d)
        q = self.au_pool(self.queries.expand(n, -1, -1), roi)  # (N, n_queries, d)
        q = self.out_norm(q)
        return q.mean(1) if self.pool == "mean" else q.flatten(1)  # (N, out_dim)
