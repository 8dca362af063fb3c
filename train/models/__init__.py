"""Models over stored features, behind one registry and one contract.

Every model is registered with its config dataclass (`@register_model("name", NameConfig)`, the
config a `ModelConfig` with one commented field per setting) and is constructed as
`Model(config, dims)`. `build_model(spec, dims)` takes that config, or the flat dict
`{"name": ..., field: value}` of recipes and config.json. Every model is called as
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
from dataclasses import dataclass
from typing import Any

from torch import nn

from train.config import SpecConfig, SpecEntry, registrar, spec_from_dict


@dataclass
class ModelConfig(SpecConfig):
    """Base of every model's config: the MLP head every model ends in (heads.py)."""

    # hidden width of the MLP head.
    hidden: int = 512
    # dropout of the MLP head (fusion_tcn: also of its fusion and TCN).
    dropout: float = 0.1


MODEL_REGISTRY: dict[str, SpecEntry] = {}


def register_model(name: str, config: type[ModelConfig]) -> Callable[[type], type]:
    """`@register_model("hga_mlp", HGAMLPConfig)` on a model class built as `cls(config, dims)`."""
    return registrar(MODEL_REGISTRY, name, config)


def model_configs() -> dict[str, type[ModelConfig]]:
    """Registered model name -> its config class."""
    _import_all()
    return {name: entry.config for name, entry in MODEL_REGISTRY.items()}


def build_model(spec: ModelConfig | dict[str, Any], dims: dict[str, Any]) -> nn.Module:
    """Build a model from its typed config, or from `{"name": ..., field: value}` (checked)."""
    _import_all()
    name = spec.name if isinstance(spec, ModelConfig) else spec["name"]
    if name not in MODEL_REGISTRY:
        raise KeyError(f"unknown model {name!r}; known: {sorted(MODEL_REGISTRY)}")
    return MODEL_REGISTRY[name].cls(spec_from_dict("model", spec), dims)


def _import_all() -> None:
    """Importing the model modules fills the registry."""
    from train.models import heads, systems  # noqa: F401
