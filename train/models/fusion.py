"""Multi-scale audio-visual fusion with context-dependent weights (the ABAW8 system).

Each modality m (visual global, visual local, audio) is projected to a common width d. For
each window size w_s (scale s) and modality m:

    y[s, m] = MLP(Cross_s,m(Self_s,m(x_m), {x_n : n != m}))        (B, T, d)

Self: frame i of m attends to frames within w_s // 2 of it in m. Cross: it then attends to the
same frames of every other modality (visual to audio and audio to visual, window_attention.py). The
outputs are mixed twice, both times with weights the model computes from the input:

    modality weights  a[b, t, s, :] = softmax_m(gate(x_1[b, t], ..., x_M[b, t]))[s]
                      one distribution over modalities per frame and scale:
                      sum over m of a[b, t, s, m] = 1 for every b, t, s;
    scale weights     g[b, :] = WindowSelect(segment) (window_select.py), the adaptive window
                      choice: sum over s of g[b, s] = 1 for every window b;

    fused[b, t] = LayerNorm(sum_s g[b, s] * sum_m a[b, t, s, m] * y[s, m][b, t])

With gate="equal" the modality weights are fixed at 1/M (the frame-wise ablation rows).

So a frame with no audio (its audio stream holds the learned no-audio vector) can put its
weight on the face, and a segment can choose its window size. Both gates start at zero logits:
equal weights, the plain average of the earlier fixed-weight fusion.
"""

from __future__ import annotations

import torch
from torch import nn

from train.models.window_attention import WindowAttention
from train.models.window_select import WindowSelect

GATES = ("context", "equal")


class ModalityGate(nn.Module):
    """Per frame, from all modalities' features (B, T, M*d): weights (B, T, S, M), summing to
    one over M."""

    def __init__(self, n_modalities: int, d: int, n_scales: int):
        super().__init__()
        self.shape = (n_scales, n_modalities)
        self.net = nn.Sequential(
            nn.LayerNorm(n_modalities * d),
            nn.Linear(n_modalities * d, d),
            nn.GELU(),
            nn.Linear(d, n_scales * n_modalities),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).unflatten(-1, self.shape).softmax(-1)  # (B, T, S, M)


class ScaleModalityBlock(nn.Module):
    """One (scale, modality): windowed self-attention, cross-attention to the other modalities
    (when there are any), MLP; (B, T, d) -> (B, T, d)."""

    def __init__(self, d: int, heads: int, window: int, dropout: float, cross: bool):
        super().__init__()
        self.self_attn = WindowAttention(d, heads, window, dropout)
        self.cross_attn = WindowAttention(d, heads, window, dropout, cross=True) if cross else None
        self.norm = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(
        self, x: torch.Tensor, others: torch.Tensor | None, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """x (B, T, d), others (B, M-1, T, d) or None, mask (B, T) bool."""
        x = self.self_attn(x, None, mask)
        if self.cross_attn is not None:
            x = self.cross_attn(x, others, mask)
        return x + self.mlp(self.norm(x))


class MultiScaleFusion(nn.Module):
    """Fuse modalities {name: (B, T, D_m)} into (B, T, d_model).

    Args:
        dims: input width per modality name (the order fixes the weight layout).
        d_model: common width.
        windows: attention window sizes in frames, one block per (scale, modality).
        heads: attention heads.
        dropout: attention dropout.
        cross: cross-modal attention besides self-attention (with two or more modalities).
        select: window selection, "soft" or "hard" (window_select.py).
        gate: modality weights, "context" (computed per frame and scale) or "equal" (1/M).
    """

    def __init__(
        self,
        dims: dict[str, int],
        d_model: int = 256,
        windows: tuple[int, ...] | list[int] = (8, 16, 32),
        heads: int = 4,
        dropout: float = 0.1,
        cross: bool = True,
        select: str = "soft",
        gate: str = "context",
    ):
        super().__init__()
        if gate not in GATES:
            raise ValueError(f"fusion gate must be one of {GATES}, got {gate!r}")
        self.gate = gate
        self.names = list(dims)
        self.windows = tuple(windows)
        n_mod, n_scales = len(self.names), len(self.windows)
        self.cross = cross and n_mod > 1
        self.proj = nn.ModuleDict(
            {m: nn.Sequential(nn.LayerNorm(dm), nn.Linear(dm, d_model)) for m, dm in dims.items()}
        )
        self.blocks = nn.ModuleList(
            nn.ModuleDict(
                {m: ScaleModalityBlock(d_model, heads, w, dropout, self.cross) for m in self.names}
            )
            for w in self.windows
        )
        self.modality_gate = ModalityGate(n_mod, d_model, n_scales)
        self.window_select = WindowSelect(n_mod * d_model, n_scales, mode=select)
        self.norm = nn.LayerNorm(d_model)
        self.out_dim = d_model

    def weights(
        self, feats: dict[str, torch.Tensor], mask: torch.Tensor | None = None
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """Projected features {m: (B, T, d)}, modality weights (B, T, S, M) summing to one over
        M, scale weights (B, S) summing to one over S."""
        x = {m: self.proj[m](feats[m]) for m in self.names}  # each (B, T, d)
        ctx = torch.cat([x[m] for m in self.names], dim=-1)  # (B, T, M*d)
        mod_w = self.modality_gate(ctx)  # (B, T, S, M)
        if self.gate == "equal":
            mod_w = torch.full_like(mod_w, 1.0 / len(self.names))
        return x, mod_w, self.window_select(ctx, mask)

    def forward(
        self, feats: dict[str, torch.Tensor], mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        x, mod_w, scale_w = self.weights(feats, mask)
        stacked = torch.stack([x[m] for m in self.names], dim=1)  # (B, M, T, d)
        fused = 0
        for s, blocks in enumerate(self.blocks):
            per_mod = []
            for i, m in enumerate(self.names):
                others = None
                if self.cross:
                    others = torch.cat([stacked[:, :i], stacked[:, i + 1 :]], dim=1)
                per_mod.append(blocks[m](x[m], others, mask))  # (B, T, d)
            mixed = (torch.stack(per_mod, dim=-1) * mod_w[:, :, s, None, :]).sum(-1)  # (B, T, d)
            fused = fused + scale_w[:, s, None, None] * mixed
        return self.norm(fused)
