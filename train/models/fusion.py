"""Multi-scale windowed self-attention fusion of several modalities (the ABAW8 system).

Each modality (visual global, visual local, audio) is projected to a common width, then for
each window size w every frame attends to the frames within w/2 of it in its own modality
(sliding-window self-attention: short windows catch onsets, long ones context). Per scale, the
modalities are mixed with learned weights softmax(alpha_scale) (B, T, d), and the scales are
averaged into one fused sequence (B, T, d).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def window_mask(length: int, window: int, device) -> torch.Tensor:
    """(T, T) bool, True where frame j lies within window // 2 of frame i (attention allowed)."""
    idx = torch.arange(length, device=device)
    return (idx[:, None] - idx[None, :]).abs() <= window // 2


class WindowSelfAttention(nn.Module):
    """Pre-norm multi-head self-attention restricted to a sliding window, residual + MLP."""

    def __init__(self, d: int, heads: int, window: int, dropout: float):
        super().__init__()
        if d % heads:
            raise ValueError(f"WindowSelfAttention: width {d} not divisible by heads {heads}")
        self.heads, self.window, self.dropout = heads, window, dropout
        self.norm = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, d), mask (B, T) bool (False on padding) -> (B, T, d)."""
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm(x)).view(b, t, 3, self.heads, d // self.heads).unbind(2)
        allowed = window_mask(t, self.window, x.device)[None]  # (1, T, T)
        if mask is not None:
            # Real frames never attend to padding; every frame may attend to itself (no empty row).
            allowed = (allowed & mask[:, None, :]) | torch.eye(t, dtype=torch.bool, device=x.device)
        att = F.scaled_dot_product_attention(
            q.transpose(1, 2),  # (B, H, T, dh)
            k.transpose(1, 2),
            v.transpose(1, 2),
            attn_mask=allowed[:, None],  # (B|1, 1, T, T)
            dropout_p=self.dropout if self.training else 0.0,
        )  # (B, H, T, dh)
        x = x + self.out(att.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.norm2(x))


class MultiScaleFusion(nn.Module):
    """Fuse modalities {name: (B, T, D_m)} into (B, T, d_model).

    Args:
        dims: input width per modality name (the order fixes the weight layout).
        d_model: common width.
        windows: sliding-window sizes in frames, one attention per (scale, modality).
        heads: attention heads.
        dropout: attention dropout.
    """

    def __init__(
        self,
        dims: dict[str, int],
        d_model: int = 256,
        windows: tuple[int, ...] | list[int] = (8, 16, 32),
        heads: int = 4,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.names = list(dims)
        self.proj = nn.ModuleDict(
            {m: nn.Sequential(nn.LayerNorm(dm), nn.Linear(dm, d_model)) for m, dm in dims.items()}
        )
        self.attn = nn.ModuleList(
            nn.ModuleDict({m: WindowSelfAttention(d_model, heads, w, dropout) for m in self.names})
            for w in windows
        )
        # alpha[s, m]: per-scale modality logits; softmax over modalities, equal at start.
        self.alpha = nn.Parameter(torch.zeros(len(windows), len(self.names)))
        self.norm = nn.LayerNorm(d_model)
        self.out_dim = d_model

    def modality_weights(self) -> torch.Tensor:
        """(n_scales, n_modalities), rows sum to 1."""
        return self.alpha.softmax(dim=-1)

    def forward(
        self, feats: dict[str, torch.Tensor], mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = {m: self.proj[m](feats[m]) for m in self.names}  # each (B, T, d)
        weights = self.modality_weights()  # (S, M)
        fused = 0
        for s, scale in enumerate(self.attn):
            per_mod = torch.stack([scale[m](x[m], mask) for m in self.names], dim=-1)  # (B,T,d,M)
            fused = fused + (per_mod * weights[s]).sum(-1)  # (B, T, d)
        return self.norm(fused / len(self.attn))
