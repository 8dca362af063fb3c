"""Temporal convolutional network: dilated residual 1-D conv blocks over the frame sequence.

Dilations 1, 2, 4, ... give a receptive field that grows exponentially with depth at linear
cost, which is how the ABAW8 system smooths AU evidence over about a second of video.

Receptive field: block i holds two convs of kernel k and dilation 2**i, each reaching
(k - 1) * 2**i frames further, so n blocks see

    R(k, n) = 1 + 2 (k - 1) (2**n - 1)  frames

(`receptive_field`). Causal: output t sees frames t - R + 1 .. t. Centred: the reach of each
conv is split between past and future (floor to the past), so the same R frames around t.
k = 3: n = 2 gives 13 frames, n = 3 gives 29 (0.97 s at 30 fps, the ABAW8 default), n = 4 61.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def receptive_field(kernel: int, depth: int) -> int:
    """Frames one output of a `depth`-block TCN with kernel `kernel` sees (formula above)."""
    return 1 + 2 * (kernel - 1) * (2**depth - 1)


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over channels at each frame of a (B, C, T) tensor (padding stays out of it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class TemporalBlock(nn.Module):
    """Two dilated convs (norm, ReLU, dropout) and a residual: (B, C_in, T) -> (B, C_out, T)."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, dilation: int, causal: bool, dropout: float
    ):
        super().__init__()
        span = (kernel - 1) * dilation
        # Causal: only past frames; centred: half the span on each side.
        self.pad = (span, 0) if causal else (span // 2, span - span // 2)
        self.conv1 = nn.Conv1d(c_in, c_out, kernel, dilation=dilation)
        self.conv2 = nn.Conv1d(c_out, c_out, kernel, dilation=dilation)
        self.norm1, self.norm2 = ChannelNorm(c_out), ChannelNorm(c_out)
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, T); keep (B, 1, T) float zeroes padded frames before each conv."""
        y = x if keep is None else x * keep
        y = self.drop(F.relu(self.norm1(self.conv1(F.pad(y, self.pad)))))  # (B, C_out, T)
        if keep is not None:
            y = y * keep
        y = self.drop(F.relu(self.norm2(self.conv2(F.pad(y, self.pad)))))
        return F.relu(y + self.skip(x))


class TCN(nn.Module):
    """Stack of TemporalBlocks with dilation 2**i: (B, T, c_in) -> (B, T, channels[-1]).

    Args:
        c_in: input width.
        channels: output width of each block (its length is the depth).
        kernel: conv kernel size.
        causal: causal padding (online use) instead of centred (offline).
        dropout: dropout inside the blocks.
    """

    def __init__(
        self,
        c_in: int,
        channels: tuple[int, ...] | list[int] = (256, 256, 256),
        kernel: int = 3,
        causal: bool = False,
        dropout: float = 0.1,
    ):
        super().__init__()
        widths = [c_in, *channels]
        self.blocks = nn.ModuleList(
            TemporalBlock(widths[i], widths[i + 1], kernel, 2**i, causal, dropout)
            for i in range(len(channels))
        )
        self.out_dim = widths[-1]
        self.causal = causal
        self.receptive_field = receptive_field(kernel, len(channels))  # frames

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        y = x.transpose(1, 2)  # (B, C, T)
        keep = None if mask is None else mask[:, None, :].to(y.dtype)  # (B, 1, T)
        for block in self.blocks:
            y = block(y, keep)
        return y.transpose(1, 2)  # (B, T, C)
