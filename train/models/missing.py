"""Learned stand-ins for missing inputs: frames without a face, frames without audio.

A frame whose face or audio is invalid carries whatever the extractor left there (zeros, an
empty crop's tokens, silence). Replacing it with one learned vector per input makes the model's
output independent of that garbage and lets it learn what "no face" or "no audio" means.
"""

from __future__ import annotations

import torch


def fill_invalid(x: torch.Tensor, valid: torch.Tensor | None, vector: torch.Tensor) -> torch.Tensor:
    """x (B, T, F), valid (B, T) bool or None, vector (F,): invalid frames take `vector`."""
    if valid is None:
        return x
    return torch.where(valid[..., None], x, vector.to(x.dtype))
