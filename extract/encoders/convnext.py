"""ConvNeXt (v1 or v2): pooled global features, the last-stage map, and local views.

As in the ABAW8 system, a face is seen globally and through local views. "cls" is
the model's pooled, normalised feature (B, D); "patch" the last-stage feature map
(B, h, w, D); "local" (B, K, D) K augmented views of the face, or (B, 4, D) its four quadrants
(upper-left, upper-right, lower-left, lower-right). `local="views"`
(default, as the paper) encodes K views per frame, each a random resized crop, flip and small
rotation drawn from a generator seeded by (seed, track id, frame index) (view_augment.py; K
more forward passes); the job hands the encoder each frame's track id and index. `local="map"`
pools the quadrants of the last-stage map, which costs nothing extra; `local="crops"`
re-encodes each quadrant crop at full input size; `local="none"` leaves them out.
"""

from __future__ import annotations

from typing import Any

from extract.encoders.base import register_visual_encoder
from extract.encoders.view_augment import ViewAugment, warp_views
from extract.encoders.visual_base import VisualEncoder

EXAMPLE_ID = "facebook/convnext-base-224"
MODEL_TYPES = ("convnext", "convnextv2")
LOCAL_MODES = ("views", "map", "crops", "none")


class ConvNextEncoder(VisualEncoder):
    name = "convnext"
    what = "ConvNeXt"
    example_id = EXAMPLE_ID
    model_types = MODEL_TYPES

    def __init__(
        self,
        model: Any,
        source: str,
        *,
        local: str = "views",
        augment: ViewAugment | None = None,
        **kwargs: Any,
    ) -> None:
        if local not in LOCAL_MODES:
            raise ValueError(f"local must be one of {LOCAL_MODES}, got {local!r}")
        self.local = local
        self.augment = augment or ViewAugment()
        # per-frame inputs the job hands `encode` (extract/job/stages.py VISUAL_INPUTS)
        self.needs = ("track_id", "frame_index") if local == "views" else ()
        self._view_mats = None  # (n, K, 2, 3) of the frames being encoded
        self._done = 0  # frames of them already encoded
        super().__init__(
            model, source, default_size=int(getattr(model.config, "image_size", 224)), **kwargs
        )

    def encoder_fields(self) -> dict[str, Any]:
        if self.local == "views":
            return {"local": self.local, "views": self.augment.fields()}
        return {"local": self.local}

    def encode(self, crops, track_id=None, frame_index=None) -> dict[str, Any]:
        """As VisualEncoder.encode; with local="views", each frame's views are drawn from its
        (track id, frame index): without them (a direct call) the track is "" and the frames
        are numbered 0..n-1."""
        import numpy as np

        if self.local != "views":
            return super().encode(crops)
        n = len(crops)
        tracks = [""] * n if track_id is None else list(track_id)
        frames = np.arange(n) if frame_index is None else np.asarray(frame_index)
        if len(tracks) != n or len(frames) != n:
            raise ValueError(f"track_id and frame_index must have one entry per crop ({n})")
        self._view_mats = self.augment.matrices(tracks, frames, self.crop_size)
        self._done = 0
        try:
            return super().encode(crops)
        finally:
            self._view_mats = None

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
        if self.local == "views":
            b = pixels.shape[0]
            mats = self._frame_matrices(b)  # (B, K, 2, 3)
            views = warp_views(pixels, mats)  # (B, K, 3, S, S)
            pooled = self._pooled(views.flatten(0, 1))  # (B*K, D)
            result["local"] = pooled.view(b, mats.shape[1], -1)  # (B, K, D)
        elif self.local == "map":
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

    def _frame_matrices(self, b: int):
        """The view matrices of the next b frames of this `encode` call (batches come in order)."""
        if self._view_mats is None:  # _forward called directly: frames 0..b-1 of track ""
            return self.augment.matrices([""] * b, range(b), self.crop_size)
        mats = self._view_mats[self._done : self._done + b]
        self._done += b
        return mats


@register_visual_encoder("convnext")
def load_convnext(
    source: str,
    *,
    device: str = "cpu",
    layer: int | None = None,
    crop_size: int | None = None,
    local: str = "views",
    views: int = 4,
    view_seed: int = 0,
    dtype: str = "auto",
    batch_size: int = 64,
    token_storage=None,
) -> ConvNextEncoder:
    """ConvNeXt from a hub id or a local folder; `layer` is accepted for symmetry and must be None.
    `views` and `view_seed`: the number of augmented local views per frame and their seed."""
    if layer is not None:
        raise ValueError("the convnext encoder reads the last stage only; leave layer unset")
    return ConvNextEncoder.from_source(
        source,
        local=local,
        augment=ViewAugment(views=views, seed=view_seed),
        device=device,
        crop_size=crop_size,
        dtype=dtype,
        batch_size=batch_size,
        token_storage=token_storage,
    )
