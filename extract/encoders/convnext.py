"""ConvNeXt (v1 or v2): pooled global features, the last-stage map, and local views.

As in the ABAW8 system, a face is seen globally and through local views. "cls" is
the model's pooled, normalised feature (B, D); "patch" the last-stage feature map
(B, h, w, D); "local" (B, 4, D) the four quadrants (upper-left, upper-right,
lower-left, lower-right) of the face. `local="map"` (default) pools the quadrants
of the last-stage map, which costs nothing extra; `local="crops"` re-encodes each
quadrant crop at full input size (4 more forward passes, closer to the paper);
`local="none"` leaves them out.
"""

from __future__ import annotations

from typing import Any

from extract.encoders.base import register_visual_encoder
from extract.encoders.visual_base import VisualEncoder

EXAMPLE_ID = "facebook/convnext-base-224"
MODEL_TYPES = ("convnext", "convnextv2")
LOCAL_MODES = ("map", "crops", "none")


class ConvNextEncoder(VisualEncoder):
    name = "convnext"
    what = "ConvNeXt"
    example_id = EXAMPLE_ID
    model_types = MODEL_TYPES

    def __init__(self, model: Any, source: str, *, local: str = "map", **kwargs: Any) -> None:
        if local not in LOCAL_MODES:
            raise ValueError(f"local must be one of {LOCAL_MODES}, got {local!r}")
        self.local = local
        super().__init__(
            model, source, default_size=int(getattr(model.config, "image_size", 224)), **kwargs
        )

    def encoder_fields(self) -> dict[str, Any]:
        return {"local": self.local}

    def _pooled(self, pixels):
        return self.model(pixel_values=pixels).pooler_output  # (B, D)

    def _forward(self, pixels) -> dict[str, Any]:
        import torch
        import torch.nn.functional as F

        out = self.model(pixel_values=pixels)
        fmap = out.last_hidden_state  # (B, D, h, w)
        result = {
            "cls": out.pooler_output,
            "patch": fmap.permute(0, 2, 3, 1),
        }  # (B, D), (B, h, w, D)
        if self.local == "map":
            quads = F.adaptive_avg_pool2d(fmap, 2).flatten(2).transpose(1, 2)  # (B, 4, D)
            result["local"] = self.model.layernorm(quads)  # (B, 4, D)
        elif self.local == "crops":
            s = pixels.shape[-1]
            half = s // 2
            views = []
            for y in (0, s - half):
                for x in (0, s - half):
                    view = pixels[:, :, y : y + half, x : x + half]  # (B, 3, S/2, S/2)
                    view = F.interpolate(view, size=(s, s), mode="bilinear", align_corners=False)
                    views.append(self._pooled(view))  # (B, D)
            result["local"] = torch.stack(views, dim=1)  # (B, 4, D)
        return result


@register_visual_encoder("convnext")
def load_convnext(
    source: str,
    *,
    device: str = "cpu",
    layer: int | None = None,
    crop_size: int | None = None,
    local: str = "map",
    dtype: str = "auto",
    batch_size: int = 64,
    token_storage=None,
) -> ConvNextEncoder:
    """ConvNeXt from a hub id or a local folder; `layer` is accepted for symmetry and must be None."""
    if layer is not None:
        raise ValueError("the convnext encoder reads the last stage only; leave layer unset")
    return ConvNextEncoder.from_source(
        source,
        local=local,
        device=device,
        crop_size=crop_size,
        dtype=dtype,
        batch_size=batch_size,
        token_storage=token_storage,
    )
