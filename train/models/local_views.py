"""Local visual views read by the model: several views per frame, a random subset in training.

The ABAW8 system sees a face globally and through local views (the paper: random crops, flips
and rotations; our stores keep K such views of every frame, each encoded by ConvNeXt at
extraction (extract/encoders/view_augment.py), batch key "local" (B, T, V, D)). In training each window uses the mean of `n_train` views drawn at random
(the same views for all its frames, as one augmented clip); at eval, the mean over all views,
so evaluation is deterministic and sees everything the training draws could.
"""

from __future__ import annotations

import torch
from torch import nn


class LocalViews(nn.Module):
    """views (B, T, V, D) -> (B, T, D): mean of a random subset of n_train views per window in
    training, mean of all views at eval."""

    def __init__(self, n_train: int = 1):
        super().__init__()
        if n_train < 1:
            raise ValueError(f"local_views must be >= 1, got {n_train}")
        self.n_train = n_train

    def choose(self, b: int, v: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, V) float: 1/k on the k = min(n_train, V) views drawn for each window, else 0."""
        k = min(self.n_train, v)
        draw = torch.rand(b, v, generator=generator)  # drawn on the CPU: one stream per seed
        pick = torch.zeros(b, v).scatter_(1, draw.topk(k, dim=1).indices, 1.0 / k)
        return pick

    def forward(
        self, views: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        if not self.training:
            return views.mean(2)
        b, _, v, _ = views.shape
        weights = self.choose(b, v, generator).to(views.device, views.dtype)  # (B, V)
        return torch.einsum("btvd,bv->btd", views, weights)
