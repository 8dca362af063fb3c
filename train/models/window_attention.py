"""Attention restricted to a sliding window of frames, within one stream or across streams.

Frame i of the query stream attends to frame j of each context stream when |i - j| <= w // 2
and j is a real frame (mask True). Self-attention is the case of one context stream, the query
itself; cross-modal attention passes the other modalities as the context streams, so visual
frames attend to the audio of the frames around them and audio frames to the faces around them.

`windowed_attention` is the one path used at run time: a dense (T, K*T) boolean mask handed to
`scaled_dot_product_attention` (O(T^2) memory; windows of 64-128 frames make that cheap).
`windowed_attention_ref` is its plain reference, one explicit softmax per query frame over the
frames of its window; a test holds them equal.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def window_mask(length: int, window: int, device=None) -> torch.Tensor:
    """(T, T) bool, True where frame j lies within window // 2 of frame i (attention allowed)."""
    idx = torch.arange(length, device=device)
    return (idx[:, None] - idx[None, :]).abs() <= window // 2


def _allowed(t: int, k: int, window: int, mask: torch.Tensor | None, device) -> torch.Tensor:
    """(B|1, T, K*T) bool for K context streams of T frames each.

    Padding (mask False) is never a key for any query; every query may attend to its own frame
    in each stream, so no row is empty (padded queries then read padding only, and real frames
    never read it)."""
    allowed = window_mask(t, window, device)[None]  # (1, T, T)
    if mask is not None:
        eye = torch.eye(t, dtype=torch.bool, device=device)
        allowed = (allowed & mask[:, None, :]) | eye  # (B, T, T)
    return allowed.repeat(1, 1, k)  # (B|1, T, K*T)


def windowed_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    window: int,
    mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """q (B, H, T, dh); k, v (B, H, K, T, dh) for K context streams; mask (B, T) bool or None
    -> (B, H, T, dh)."""
    b, h, n_streams, t, dh = k.shape
    allowed = _allowed(t, n_streams, window, mask, q.device)
    return F.scaled_dot_product_attention(
        q,
        k.reshape(b, h, n_streams * t, dh),  # (B, H, K*T, dh), stream-major as `allowed`
        v.reshape(b, h, n_streams * t, dh),
        attn_mask=allowed[:, None],  # (B|1, 1, T, K*T)
        dropout_p=dropout_p,
    )


def windowed_attention_ref(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    window: int,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The plain reference of `windowed_attention` (no dropout): a loop over query frames."""
    b, h, n_streams, t, dh = k.shape
    out = torch.empty_like(q)
    for i in range(t):
        lo, hi = max(0, i - window // 2), min(t, i + window // 2 + 1)
        keys = k[:, :, :, lo:hi].reshape(b, h, -1, dh)  # (B, H, K*w, dh)
        vals = v[:, :, :, lo:hi].reshape(b, h, -1, dh)
        scores = (keys @ q[:, :, i, :, None])[..., 0] / dh**0.5  # (B, H, K*w)
        if mask is not None:
            ok = mask[:, lo:hi].clone()  # (B, w)
            ok[:, i - lo] = True
            scores = scores.masked_fill(~ok.repeat(1, n_streams)[:, None], float("-inf"))
        out[:, :, i] = (scores.softmax(-1)[..., None] * vals).sum(-2)
    return out


class WindowAttention(nn.Module):
    """Pre-norm multi-head windowed attention with a residual: x (B, T, d) attends to the K
    context streams (B, K, T, d) (cross=True) or to itself (cross=False, context None)."""

    def __init__(self, d: int, heads: int, window: int, dropout: float, cross: bool = False):
        super().__init__()
        if d % heads:
            raise ValueError(f"WindowAttention: width {d} not divisible by heads {heads}")
        self.heads, self.window, self.dropout = heads, window, dropout
        self.norm_q = nn.LayerNorm(d)
        self.norm_kv = nn.LayerNorm(d) if cross else None
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, d)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x (B, T, d), context (B, K, T, d) or None, mask (B, T) bool -> (B, T, d)."""
        b, t, d = x.shape
        h, dh = self.heads, d // self.heads
        xq = self.norm_q(x)
        if (context is None) != (self.norm_kv is None):
            raise ValueError("WindowAttention: pass a context exactly when built with cross=True")
        ctx = xq[:, None] if context is None else self.norm_kv(context)  # (B, K, T, d)
        q = self.q(xq).view(b, t, h, dh).transpose(1, 2)  # (B, H, T, dh)
        k, v = self.kv(ctx).view(b, ctx.shape[1], t, 2, h, dh).permute(3, 0, 4, 1, 2, 5)
        att = windowed_attention(  # k, v (B, H, K, T, dh)
            q, k, v, self.window, mask, self.dropout if self.training else 0.0
        )  # (B, H, T, dh)
        return x + self.out(att.transpose(1, 2).reshape(b, t, d))
