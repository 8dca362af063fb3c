"""AG-SSM: an audio-guided selective state-space block over the frame sequence.

A Mamba block decides per frame how much of its state to keep (delta) and what to write and read
(B, C) from the input itself. Here those selection parameters also see the audio, so speech,
laughter or silence decide what the visual state remembers. With x the visual stream (B, T, d)
and a the audio features (B, T, Da), per direction (forward in time and reversed):

    x' = LayerNorm(x)
    v, z = split(W_in x')                                  v, z: (B, T, E), E = expand * d
    v = silu(DWConv1d(v))                                  depthwise, centred or causal
    g = [v, W_a a]   (guided)     or    g = v   (guided=False: plain Mamba, the control)
    delta = softplus(W_dt (W_r g) + b_dt)                  (B, T, E)  how much to update
    B_t = W_B g,   C_t = W_C g  (or W_C v if guide_c=False) (B, T, N)  what to write / read
    h_t = exp(delta_t A) h_{t-1} + delta_t B_t v_t,   A = -exp(A_log)  (E, N)
    y_t = (C_t . h_t + D v_t) * silu(z_t)
    out = x + W_out(y_fwd + y_bwd)                         residual; the next block normalises

Frames where audio is missing use a learned "no audio" vector in place of W_a a. Padded frames
get delta = 0 and zero input, so the state passes through them unchanged and they change
nothing for real frames in either direction.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from train.models.scan import selective_scan
from train.optim import no_weight_decay


class _Direction(nn.Module):
    """One scan direction: depthwise conv, selection projections and the SSM parameters."""

    def __init__(
        self, inner: int, sel_dim: int, state: int, dt_rank: int, conv: int, guide_c: bool
    ):
        super().__init__()
        self.conv = nn.Conv1d(inner, inner, conv, groups=inner, padding=0)
        self.x_dt = nn.Linear(sel_dim, dt_rank, bias=False)
        self.dt_proj = nn.Linear(dt_rank, inner, bias=True)
        self.x_b = nn.Linear(sel_dim, state, bias=False)
        self.x_c = nn.Linear(sel_dim if guide_c else inner, state, bias=False)
        self.guide_c = guide_c
        # S4D-real initialisation: A = -(1..N) per channel; delta starts in [1e-3, 1e-1].
        a = torch.arange(1, state + 1, dtype=torch.float32).repeat(inner, 1)  # (E, N)
        self.A_log = nn.Parameter(torch.log(a))
        self.D = nn.Parameter(torch.ones(inner))
        no_weight_decay(self.A_log, self.D)  # decay would pull every state to one rate, D to 0
        dt = torch.exp(torch.rand(inner) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)


class AGSSMBlock(nn.Module):
    """One bidirectional audio-guided Mamba block: (B, T, d) -> (B, T, d), residual inside.

    Args:
        d_model: width of the visual stream.
        d_audio: width of the audio features fed to the selection (0 or guided=False: unused).
        d_state: SSM state size N per channel.
        expand: inner width E = expand * d_model.
        d_conv: depthwise conv kernel over frames.
        causal: pad the conv on the left only (else centred).
        guided: audio enters the selection (False: a plain visual-only Mamba, the ablation).
        guide_c: C also sees the audio (else C is computed from the visual stream only).
        bidirectional: add a reversed-time scan (extraction is offline, the future is known).
        scan_impl: selective_scan implementation ("auto", "torch", "ref", "cuda").
    """

    def __init__(
        self,
        d_model: int,
        d_audio: int = 0,
        d_state: int = 16,
        expand: int = 2,
        d_conv: int = 4,
        causal: bool = False,
        guided: bool = True,
        guide_c: bool = True,
        bidirectional: bool = True,
        scan_impl: str = "auto",
    ):
        super().__init__()
        if guided and d_audio <= 0:
            raise ValueError("AGSSMBlock: guided=True needs d_audio > 0")
        inner = expand * d_model
        self.guided, self.causal, self.d_conv, self.scan_impl = guided, causal, d_conv, scan_impl
        self.norm = nn.LayerNorm(d_model)
        self.in_proj = nn.Linear(d_model, 2 * inner)
        sel_dim = inner
        if guided:
            self.audio_proj = nn.Sequential(nn.LayerNorm(d_audio), nn.Linear(d_audio, inner))
            self.no_audio = nn.Parameter(torch.zeros(inner))
            sel_dim = 2 * inner
        dt_rank = max(1, math.ceil(d_model / 16))
        n_dir = 2 if bidirectional else 1
        self.dirs = nn.ModuleList(
            _Direction(inner, sel_dim, d_state, dt_rank, d_conv, guide_c and guided)
            for _ in range(n_dir)
        )
        self.out_proj = nn.Linear(inner, d_model)

    def forward(
        self,
        x: torch.Tensor,
        audio: torch.Tensor | None = None,
        audio_valid: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x (B, T, d), audio (B, T, Da), audio_valid / mask (B, T) bool -> (B, T, d)."""
        v, z = self.in_proj(self.norm(x)).chunk(2, dim=-1)  # (B, T, E) each
        keep = None if mask is None else mask[..., None].to(v.dtype)  # (B, T, 1)
        if keep is not None:
            v = v * keep
        a = None
        if self.guided:
            if audio is None:
                raise ValueError("AGSSMBlock(guided=True) needs the audio features")
            a = self.audio_proj(audio)  # (B, T, E)
            if audio_valid is not None:
                a = torch.where(audio_valid[..., None], a, self.no_audio.to(a.dtype))
        y = 0
        for i, d in enumerate(self.dirs):
            flip = i == 1
            y_d = self._scan(d, *(t.flip(1) if flip else t for t in (v, z)), a, keep, flip)
            y = y + (y_d.flip(1) if flip else y_d)  # (B, T, E)
        return x + self.out_proj(y)

    def _scan(self, d: _Direction, v, z, a, keep, flip: bool) -> torch.Tensor:
        """One direction over (B, T, E) inputs already in its time order."""
        if a is not None and flip:
            a = a.flip(1)
        if keep is not None and flip:
            keep = keep.flip(1)
        k = self.d_conv - 1
        pad = (k, 0) if self.causal else (k // 2, k - k // 2)
        vc = F.silu(d.conv(F.pad(v.transpose(1, 2), pad)))  # (B, E, T)
        v = vc.transpose(1, 2)  # (B, T, E)
        g = v if a is None else torch.cat([v, a], dim=-1)  # (B, T, sel)
        delta = d.dt_proj(d.x_dt(g))  # (B, T, E), before softplus
        delta = F.softplus(delta)
        if keep is not None:
            delta = delta * keep  # padded frames: state passes unchanged
            v = v * keep
        b_sel = d.x_b(g)  # (B, T, N)
        c_sel = d.x_c(g if d.guide_c else v)  # (B, T, N)
        y = selective_scan(
            v.transpose(1, 2),  # (B, E, T)
            delta.transpose(1, 2),
            -torch.exp(d.A_log.float()),  # (E, N)
            b_sel.transpose(1, 2),  # (B, N, T)
            c_sel.transpose(1, 2),
            D=d.D.float(),
            z=z.transpose(1, 2),
            impl=self.scan_impl,
        )  # (B, E, T)
        return y.transpose(1, 2)  # (B, T, E)
