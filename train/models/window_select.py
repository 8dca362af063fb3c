"""Adaptive window selection: a learned choice among attention window sizes per segment.

The ABAW8 paper picks the temporal window of its fusion attention adaptively instead of fixing
it; its text does not give the rule in a form we can rebuild exactly, so this is our reading:
a segment (one window of frames the model sees) is summarised by the mean of its real frames'
fused features, and a small network maps that summary to one logit per window size. The
softmax of those logits weighs the per-scale outputs, so a calm segment can lean on long
windows and a segment full of onsets on short ones.

mode "soft": the weights are the softmax (B, S), summing to one over scales.
mode "hard": the forward pass uses the one-hot of the argmax (one window size per segment, as a
rule would) and the gradient flows through the softmax (straight-through estimator).
The last layer starts at zero, so at initialisation every scale weighs 1/S ("soft").
"""

from __future__ import annotations

import torch
from torch import nn

SELECT_MODES = ("soft", "hard")


class WindowSelect(nn.Module):
    """Segment context (B, T, C) and mask (B, T) -> scale weights (B, S), rows summing to one."""

    def __init__(self, c_in: int, n_scales: int, hidden: int = 64, mode: str = "soft"):
        super().__init__()
        if mode not in SELECT_MODES:
            raise ValueError(f"window select mode must be one of {SELECT_MODES}, got {mode!r}")
        self.mode = mode
        self.net = nn.Sequential(
            nn.LayerNorm(c_in), nn.Linear(c_in, hidden), nn.GELU(), nn.Linear(hidden, n_scales)
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            summary = x.mean(1)  # (B, C)
        else:
            keep = mask[..., None].to(x.dtype)  # (B, T, 1)
            summary = (x * keep).sum(1) / keep.sum(1).clamp_min(1.0)  # (B, C), real frames only
        probs = self.net(summary).softmax(-1)  # (B, S)
        if self.mode == "soft":
            return probs
        hard = torch.zeros_like(probs).scatter_(-1, probs.argmax(-1, keepdim=True), 1.0)
        return hard + probs - probs.detach()
