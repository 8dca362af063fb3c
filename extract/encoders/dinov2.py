"""DINOv2 (any size, with or without register tokens): CLS and patch tokens of one layer.

Loaded with transformers' AutoModel, so `facebook/dinov2-{small,base,large,giant}`
and `facebook/dinov2-with-registers-*` (or their downloaded folders) all work.
Tokens are [CLS, registers..., patches...]; registers are dropped. The default is
the last layer's normalised output; `layer=k` takes the output of block k
(negative counts from the end) passed through the model's final layer norm, as
DINOv2's own `get_intermediate_layers` does.
"""

from __future__ import annotations

from typing import Any

from extract.encoders.base import register_visual_encoder
from extract.encoders.visual_base import VisualEncoder

EXAMPLE_ID = "facebook/dinov2-base"
MODEL_TYPES = ("dinov2", "dinov2_with_registers")


class Dinov2Encoder(VisualEncoder):
    name = "dinov2"
    what = "DINOv2"
    example_id = EXAMPLE_ID
    model_types = MODEL_TYPES

    def __init__(self, model: Any, source: str, *, layer: int | None = None, **kwargs: Any) -> None:
        cfg = model.config
        self.patch_size = int(cfg.patch_size)
        self.n_registers = int(getattr(cfg, "num_register_tokens", 0) or 0)
        n_layers = int(cfg.num_hidden_layers)
        if layer is not None and not (-n_layers <= layer <= n_layers and layer != 0):
            raise ValueError(f"layer must be in 1..{n_layers} or -{n_layers}..-1, got {layer}")
        # hidden_states[0] is the embedding output, hidden_states[k] the output of block k
        self.layer = None if layer is None else (layer if layer > 0 else n_layers + 1 + layer)
        if self.layer == n_layers:
            self.layer = None  # the last block: use the model's own normalised output
        super().__init__(model, source, default_size=int(cfg.image_size), **kwargs)
        if self.crop_size % self.patch_size:
            raise ValueError(
                f"crop size {self.crop_size} is not a multiple of the patch size {self.patch_size}"
            )

    def encoder_fields(self) -> dict[str, Any]:
        n_layers = int(self.model.config.num_hidden_layers)
        return {"layer": self.layer or n_layers, "registers_skipped": self.n_registers}

    def _forward(self, pixels) -> dict[str, Any]:
        out = self.model(pixel_values=pixels, output_hidden_states=self.layer is not None)
        if self.layer is None:
            tokens = out.last_hidden_state  # (B, 1 + R + N, D), normalised
        else:
            tokens = self.model.layernorm(out.hidden_states[self.layer])  # (B, 1 + R + N, D)
        b, _, d = tokens.shape
        side = pixels.shape[-1] // self.patch_size
        cls = tokens[:, 0]  # (B, D)
        patch = tokens[:, 1 + self.n_registers :].reshape(b, side, side, d)  # (B, h, w, D)
        return {"cls": cls, "patch": patch}


@register_visual_encoder("dinov2")
def load_dinov2(
    source: str,
    *,
    device: str = "cpu",
    layer: int | None = None,
    crop_size: int | None = None,
    dtype: str = "auto",
    batch_size: int = 64,
    token_storage=None,
) -> Dinov2Encoder:
    """DINOv2 from a hub id or a local folder (see module docstring for `layer`)."""
    return Dinov2Encoder.from_source(
        source,
        layer=layer,
        device=device,
        crop_size=crop_size,
        dtype=dtype,
        batch_size=batch_size,
        token_storage=token_storage,
    )
