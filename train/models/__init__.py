"""Models over stored features, behind one registry and one contract.

Every model is an `nn.Module` built by `build_model(spec, dims)` and called as
`model(batch) -> logits (B, T, n_aus)`, split like timm into
`forward_features(batch) -> (B, T, F)` and `forward_head(features) -> (B, T, n_aus)`.
`model.required_inputs` is the set of batch keys it reads (masks below are always optional).

`batch` is a dict of tensors for windows of T frames (keys present only when the
recipe reads them):

    cls          (B, T, Dv)          visual CLS / pooled feature
    patch        (B, T, h, w, Dp)    visual patch tokens (dequantised float)
    rois         (B, T, R, 4)        AU regions, crop coords in [0, 1] (x0, y0, x1, y1)
    local        (B, T, V, Dl)       V local visual views per frame (ConvNeXt's augmented views)
    audio        (B, T, Da)          audio features pooled on frame times
    audio_valid  (B, T) bool
    face_valid   (B, T) bool
    mask         (B, T) bool         real frames (False on padding)

`dims` gives the feature sizes the store provides: {"cls": Dv, "patch": Dp,
"grid": (h, w), "audio": Da, "local": Dl, "n_rois": R, "n_aus": 12}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

MODEL_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODEL_REGISTRY[name] = factory
        return factory

    return wrap


def build_model(spec: dict[str, Any], dims: dict[str, Any]) -> nn.Module:
    """Build `spec["name"]` with the remaining keys of `spec` as keyword arguments."""
    _import_all()
    spec = dict(spec)
    name = spec.pop("name")
    if name not in MODEL_REGISTRY:
        raise KeyError(f"unknown model {name!r}; known: {sorted(MODEL_REGISTRY)}")
    return MODEL_REGISTRY[name](dims=dims, **spec)


def _import_all() -> None:
    """Importing the model modules fills the registry."""
    from train.models import heads, systems  # noqa: F401
