"""Heads and the frame-wise baseline model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from train.models import ModelConfig, register_model
from train.models.missing import fill_invalid


class MLPHead(nn.Module):
    """Linear -> ReLU -> Dropout -> Linear, applied per frame: (B, T, F) -> (B, T, n_out)."""

    def __init__(self, in_dim: int, n_out: int, hidden: int = 512, dropout: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_out)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class FeaturesHeadModel(nn.Module):
    """The model contract: `forward = forward_head(forward_features(batch))`, with the head an
    MLPHead stored as `self.head`; subclasses define `forward_features`."""

    head: MLPHead

    def forward_features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.head(feats)  # (B, T, n_aus)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.forward_head(self.forward_features(batch))


@dataclass
class FrameMLPConfig(ModelConfig):
    """frame_mlp: each frame's CLS feature (and audio) through the MLP head."""

    # append the audio features to each frame's CLS feature.
    use_audio: bool = False
    # more per-frame batch keys joined to the CLS feature, each flattened per frame (e.g. the
    # classical "geometry" (T, G) or FHOG "regions" (T, R, D)).
    extra: tuple[str, ...] = ()


@register_model("frame_mlp", FrameMLPConfig)
class FrameMLP(FeaturesHeadModel):
    """The baseline: each frame's CLS feature (optionally with audio) through an MLP, no time
    context. Frames without audio (audio_valid False) take a learned no-audio vector. `extra`
    names more per-frame batch keys joined to the CLS feature, each flattened per frame (e.g.
    the classical landmark "geometry" (T, G) or FHOG "regions" (T, R, D))."""

    def __init__(self, cfg: FrameMLPConfig, dims: dict[str, Any]):
        super().__init__()
        use_audio, hidden, dropout = cfg.use_audio, cfg.hidden, cfg.dropout
        self.use_audio = use_audio
        self.extra = tuple(cfg.extra)
        self.required_inputs = {"cls", *self.extra} | ({"audio"} if use_audio else set())
        extra_dim = sum(dims.get(f"{k}_size", dims[k]) for k in self.extra)
        in_dim = dims["cls"] + extra_dim + (dims["audio"] if use_audio else 0)
        self.no_audio = nn.Parameter(torch.zeros(dims["audio"])) if use_audio else None
        self.norm = nn.LayerNorm(in_dim)
        self.head = MLPHead(in_dim, dims.get("n_aus", 12), hidden, dropout)

    def forward_features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = batch["cls"]  # (B, T, Dv)
        if self.extra:
            more = [batch[k].flatten(2).to(x.dtype) for k in self.extra]  # (B, T, D_k) each
            x = torch.cat([x, *more], dim=-1)  # (B, T, Dv + sum D_k)
        if self.use_audio:
            audio = fill_invalid(batch["audio"], batch.get("audio_valid"), self.no_audio)
            x = torch.cat([x, audio], dim=-1)  # (B, T, Dv + Da)
        return self.norm(x)
