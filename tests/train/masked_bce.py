"""A masked BCE with the train.losses contract, so trainer tests do not depend on that module."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def build_test_loss(spec: dict):
    pos_weight = spec.get("pos_weight")

    def loss_fn(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        known = (labels >= 0) & mask[..., None]  # (B, T, A)
        pw = None if pos_weight is None else torch.as_tensor(pos_weight, dtype=logits.dtype)
        per = F.binary_cross_entropy_with_logits(
            logits, labels.clamp(min=0).to(logits.dtype), pos_weight=pw, reduction="none"
        )
        return (per * known).sum() / known.sum().clamp(min=1)

    return loss_fn
