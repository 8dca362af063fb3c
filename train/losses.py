"""Multi-label AU losses behind one registry: `build_loss({"name": ..., **fields})`.

Every loss is registered with its config dataclass (`@register_loss("asl", ASLConfig)`) and is
constructed as `Loss(config)`.

Every loss is called as `loss_fn(logits (B, T, n_aus), labels (B, T, n_aus), mask (B, T) | None)`
and averages over the valid entries only: labels of -1 (not annotated) and frames with mask
False (padding) contribute nothing. With no valid entry the loss is a zero that still has a
gradient path, so a batch of unlabelled frames does not break the step.

- "bce":   binary cross-entropy with logits; pos_weight (n_aus,) or None.
- "asl":   asymmetric loss (Ridnik et al., ICCV 2021): focusing gamma_pos on positives,
           gamma_neg on negatives, and probability shifting p_m = max(p - clip, 0) that discards
           easy negatives entirely. AU labels are mostly negative; this is what the ABAW10
           system trains with.
- "focal": focal loss (Lin et al.) with gamma and optional alpha balancing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from train.config import SpecConfig, SpecEntry, registrar, spec_from_dict


@dataclass
class LossConfig(SpecConfig):
    """Base of every loss's config."""


@dataclass
class BCEConfig(LossConfig):
    """bce: binary cross-entropy with logits."""

    # positive weight per AU (12 numbers); null: from imbalance.pos_weight (the trainer's).
    pos_weight: list[float] | None = None


@dataclass
class ASLConfig(LossConfig):
    """asl: the asymmetric loss."""

    # focusing exponent on positives.
    gamma_pos: float = 0.0
    # focusing exponent on negatives.
    gamma_neg: float = 4.0
    # probability shift of the negatives (p_m = max(p - clip, 0); 0: none).
    clip: float = 0.05
    # floor inside the log of the shifted negatives.
    eps: float = 1e-8


@dataclass
class FocalConfig(LossConfig):
    """focal: the focal loss."""

    # focusing exponent (0: BCE).
    gamma: float = 2.0
    # weight of positives (negatives: 1 - alpha); null: no class balancing.
    alpha: float | None = None


LOSS_REGISTRY: dict[str, SpecEntry] = {}


def register_loss(name: str, config: type[LossConfig]) -> Callable[[type], type]:
    """`@register_loss("asl", ASLConfig)` on a loss class built as `cls(config)`."""
    return registrar(LOSS_REGISTRY, name, config)


def loss_configs() -> dict[str, type[LossConfig]]:
    """Registered loss name -> its config class."""
    return {name: entry.config for name, entry in LOSS_REGISTRY.items()}


def build_loss(spec: LossConfig | dict[str, Any] | str) -> nn.Module:
    """Build a loss from its typed config, `{"name": ..., field: value}` (checked) or a name."""
    spec = {"name": spec} if isinstance(spec, str) else spec
    name = spec.name if isinstance(spec, LossConfig) else spec["name"]
    if name not in LOSS_REGISTRY:
        raise KeyError(f"unknown loss {name!r}; known: {sorted(LOSS_REGISTRY)}")
    return LOSS_REGISTRY[name].cls(spec_from_dict("loss", spec))


class MaskedMultiLabelLoss(nn.Module):
    """Shared masking and averaging; subclasses give the per-entry loss."""

    def elementwise(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(
        self, logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        if logits.shape != labels.shape:
            raise ValueError(f"loss: logits {tuple(logits.shape)} != labels {tuple(labels.shape)}")
        valid = labels >= 0  # (B, T, n_aus); -1 = unknown
        if mask is not None:
            valid = valid & mask.bool()[..., None]
        logits = logits.float()
        target = labels.float().clamp(min=0)  # -1 entries are masked out below
        per = self.elementwise(logits, target)  # (B, T, n_aus)
        per = torch.where(valid, per, torch.zeros_like(per))
        n_valid = valid.sum()
        if n_valid == 0:
            return logits.sum() * 0.0
        return per.sum() / n_valid


def _pos_weight(pos_weight: Sequence[float] | None) -> torch.Tensor | None:
    if pos_weight is None:
        return None
    if isinstance(pos_weight, str):
        raise ValueError(
            f"loss pos_weight {pos_weight!r} must be resolved to a list of numbers before "
            "build_loss (the trainer computes 'auto' from the training labels)"
        )
    return torch.as_tensor(pos_weight, dtype=torch.float32)


@register_loss("bce", BCEConfig)
class BCELoss(MaskedMultiLabelLoss):
    """Binary cross-entropy; pos_weight (n_aus,) scales the positive term per AU."""

    def __init__(self, cfg: BCEConfig):
        super().__init__()
        pw = _pos_weight(cfg.pos_weight)
        self.register_buffer("pos_weight", pw if pw is not None else torch.empty(0))

    def elementwise(self, logits, target):
        pw = self.pos_weight.to(logits.device) if self.pos_weight.numel() else None
        return F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw, reduction="none")


@register_loss("asl", ASLConfig)
class AsymmetricLoss(MaskedMultiLabelLoss):
    """Asymmetric loss:  L+ = (1-p)^gamma_pos log(p),  L- = p_m^gamma_neg log(1-p_m),
    p_m = max(p - clip, 0);  loss = -(y L+ + (1-y) L-).  At gammas 0 and clip 0 it is BCE."""

    def __init__(self, cfg: ASLConfig):
        super().__init__()
        self.gamma_pos, self.gamma_neg, self.clip, self.eps = (
            cfg.gamma_pos,
            cfg.gamma_neg,
            cfg.clip,
            cfg.eps,
        )

    def elementwise(self, logits, target):
        p = torch.sigmoid(logits)
        log_p = F.logsigmoid(logits)
        if self.clip > 0:
            p_m = (p - self.clip).clamp(min=0)  # shifted probability of the negatives
            log_1m = torch.log((1 - p_m).clamp(min=self.eps))
        else:
            p_m, log_1m = p, F.logsigmoid(-logits)
        pos = log_p if self.gamma_pos == 0 else (1 - p).pow(self.gamma_pos) * log_p
        neg = log_1m if self.gamma_neg == 0 else p_m.pow(self.gamma_neg) * log_1m
        return -(target * pos + (1 - target) * neg)


@register_loss("focal", FocalConfig)
class FocalLoss(MaskedMultiLabelLoss):
    """Focal loss: -alpha_t (1 - p_t)^gamma log(p_t); alpha None = no class balancing."""

    def __init__(self, cfg: FocalConfig):
        super().__init__()
        self.gamma, self.alpha = cfg.gamma, cfg.alpha

    def elementwise(self, logits, target):
        ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        p = torch.sigmoid(logits)
        p_t = p * target + (1 - p) * (1 - target)
        loss = ce if self.gamma == 0 else (1 - p_t).pow(self.gamma) * ce
        if self.alpha is not None:
            loss = (self.alpha * target + (1 - self.alpha) * (1 - target)) * loss
        return loss
