"""The registered systems: the building blocks assembled as the ablation rows and the two papers.

- "hga_mlp":    HGA per frame (+ audio) -> MLP head                       (row `+HGA`)
- "hga_agssm":  HGA per frame (+ audio) -> bidirectional AG-SSM layers guided by audio -> MLP head
                (`+AG-SSM`)
- "fusion_tcn": visual global (+ local views) and audio -> multi-scale fusion -> causal TCN ->
                MLP 512 (ABAW8)

Frames without a face (batch["face_valid"] False) get a learned "no face" vector in place of
their per-frame visual embedding, and frames without audio (batch["audio_valid"] False) a
learned "no audio" vector in place of their audio features, in every system that reads audio,
so garbage of empty crops or silent tracks never reaches the head (missing.py).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from train.models import register_model
from train.models.ag_ssm import AGSSMBlock
from train.models.audio_views import AudioLocalViews
from train.models.fusion import MultiScaleFusion
from train.models.heads import FeaturesHeadModel, MLPHead
from train.models.hga import HGA, roi_pool
from train.models.local_views import LocalViews
from train.models.missing import fill_invalid
from train.models.tcn import TCN

log = logging.getLogger(__name__)


class _FrameHGA(nn.Module):
    """HGA applied to every frame of a window: batch -> (B, T, F), with CLS (use_cls) and audio
    (use_audio) appended. Frames without a face get the learned no-face vector in place of their
    visual part (their audio stays); frames without audio the learned no-audio vector in place
    of their audio part."""

    def __init__(self, dims: dict[str, Any], use_cls: bool, use_audio: bool, **hga_kw: Any):
        super().__init__()
        self.hga = HGA(dims["patch"], dims["n_rois"], **hga_kw)
        self.use_cls, self.use_audio = use_cls, use_audio
        visual_dim = self.hga.out_dim + (dims["cls"] if use_cls else 0)
        self.no_face = nn.Parameter(torch.zeros(visual_dim))
        self.no_audio = nn.Parameter(torch.zeros(dims["audio"])) if use_audio else None
        self.out_dim = visual_dim + (dims["audio"] if use_audio else 0)
        self.required_inputs = {"patch", "rois"} | ({"cls"} if use_cls else set())
        self.required_inputs |= {"audio"} if use_audio else set()

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        patch, rois = batch["patch"], batch["rois"]  # (B, T, h, w, Dp), (B, T, R, 4)
        b, t = patch.shape[:2]
        x = self.hga(patch.flatten(0, 1).float(), rois.flatten(0, 1)).view(b, t, -1)  # (B, T, F)
        if self.use_cls:
            x = torch.cat([x, batch["cls"].float()], dim=-1)  # (B, T, F + Dv)
        x = fill_invalid(x, batch.get("face_valid"), self.no_face)
        if self.use_audio:
            audio = fill_invalid(batch["audio"].float(), batch.get("audio_valid"), self.no_audio)
            x = torch.cat([x, audio], dim=-1)  # (B, T, F + Dv + Da)
        return x


def _hga_kwargs(
    d_model: int, heads: int, hga_layers: int, samples: int, pool: str, dropout: float
) -> dict[str, Any]:
    return dict(
        d_model=d_model, heads=heads, layers=hga_layers, samples=samples, pool=pool, dropout=dropout
    )


@register_model("hga_mlp")
class HGAMLP(FeaturesHeadModel):
    """HGA spatial encoder per frame, optionally concatenated with audio, then an MLP head.

    kwargs: d_model (HGA width), heads, hga_layers, samples (ROI sample points per side),
    pool ("mean" | "flat"), use_cls (append CLS), use_audio, hidden, dropout.
    """

    def __init__(
        self,
        *,
        dims: dict[str, Any],
        d_model: int = 128,
        heads: int = 4,
        hga_layers: int = 1,
        samples: int = 2,
        pool: str = "mean",
        use_cls: bool = False,
        use_audio: bool = False,
        hidden: int = 512,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.frames = _FrameHGA(
            dims, use_cls, use_audio, **_hga_kwargs(d_model, heads, hga_layers, samples, pool, 0.0)
        )
        self.required_inputs = set(self.frames.required_inputs)
        self.norm = nn.LayerNorm(self.frames.out_dim)
        self.head = MLPHead(self.frames.out_dim, dims.get("n_aus", 12), hidden, dropout)

    def forward_features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.norm(self.frames(batch))  # (B, T, F)


@register_model("hga_agssm")
class HGAAGSSM(FeaturesHeadModel):
    """HGA per frame, then n bidirectional AG-SSM layers over time guided by audio, MLP head.

    Audio reaches the sequence two ways: concatenated to each frame's HGA features before the
    input projection (use_audio, as in hga_mlp, so the +AG-SSM row keeps what +HGA had), and
    through the selection of every AG-SSM layer (guided). The guidance alone only modulates what
    the visual state keeps; it cannot carry what the audio says about the mouth by itself.

    kwargs: d_model, heads, hga_layers, samples, pool, use_cls, use_audio (as hga_mlp);
    n_layers (AG-SSM blocks), d_state, expand, d_conv, causal, guided (False: plain Mamba whose
    selection sees only the visual stream), guide_c, bidirectional, scan_impl; hidden, dropout.
    """

    def __init__(
        self,
        *,
        dims: dict[str, Any],
        d_model: int = 128,
        heads: int = 4,
        hga_layers: int = 1,
        samples: int = 2,
        pool: str = "mean",
        use_cls: bool = False,
        use_audio: bool = True,
        n_layers: int = 2,
        d_state: int = 16,
        expand: int = 2,
        d_conv: int = 4,
        causal: bool = False,
        guided: bool = True,
        guide_c: bool = True,
        bidirectional: bool = True,
        scan_impl: str = "auto",
        hidden: int = 512,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.frames = _FrameHGA(
            dims, use_cls, use_audio, **_hga_kwargs(d_model, heads, hga_layers, samples, pool, 0.0)
        )
        self.guided = guided
        self.in_norm = nn.LayerNorm(self.frames.out_dim)
        self.in_proj = nn.Linear(self.frames.out_dim, d_model)
        self.layers = nn.ModuleList(
            AGSSMBlock(
                d_model,
                d_audio=dims.get("audio", 0) if guided else 0,
                d_state=d_state,
                expand=expand,
                d_conv=d_conv,
                causal=causal,
                guided=guided,
                guide_c=guide_c,
                bidirectional=bidirectional,
                scan_impl=scan_impl,
            )
            for _ in range(n_layers)
        )
        self.norm = nn.LayerNorm(d_model)
        self.required_inputs = self.frames.required_inputs | ({"audio"} if guided else set())
        self.head = MLPHead(d_model, dims.get("n_aus", 12), hidden, dropout)

    def forward_features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = self.in_proj(self.in_norm(self.frames(batch)))  # (B, T, d)
        audio = batch["audio"].float() if self.guided else None  # (B, T, Da)
        for layer in self.layers:
            x = layer(x, audio, batch.get("audio_valid"), batch.get("mask"))  # (B, T, d)
        return self.norm(x)


LOCAL_MODES = (None, "views", "patch", "rois")
FUSION_MODES = ("multiscale", "frame")


@register_model("fusion_tcn")
class FusionTCN(FeaturesHeadModel):
    """ABAW8: visual global view, local views and audio -> multi-scale fusion -> TCN -> MLP 512.

    Visual: "cls" (B, T, Dv), the global view. Local: "views" reads the batch key "local"
    (B, T, V, Dl), the stored local views (ConvNeXt's K augmented views): in training the mean of
    `local_views` views drawn at random per window, at eval the mean of all (local_views.py);
    when the store maps no local views (dims has no "local") the model says so once at
    construction and runs on the global view. "patch" / "rois" build one local view from the
    patch tokens instead (mean of the grid / ROI-pooled regions).
    Audio (B, T, Da): where batch["audio_valid"] is False, a learned no-audio vector; in training
    the audio local views of audio_views.py (random time crop to at least `audio_crop` of the
    window, `freq_masks` bands of up to `freq_width` of the channels zeroed).
    Fusion (fusion.py): per-window self- and cross-modal attention at each of `windows` sizes,
    per-frame modality weights and a per-segment window choice (`select`: "soft" | "hard").
    TCN (tcn.py): causal by default; `tcn_channels` (256,)*3 with kernel 3 sees 29 frames, 0.97 s
    at 30 fps. `causal` is the TCN's: the fusion's windows are centred (max(windows) // 2 frames
    ahead) and the window choice reads the whole segment, so the system is not an online one.

    The ablation rows (recipes.py ABLATIONS["abaw8"]) switch parts off: `fusion="frame"` fuses
    each frame alone (attention window 1, one scale, no cross-modal attention, equal modality
    weights; `windows`, `cross` and `select` are then unused) and `tcn_blocks=0` drops the TCN
    (the fused frames go to the head); `tcn_blocks=n` keeps the first n of `tcn_channels`.

    kwargs: local, local_views, use_audio, audio_crop, freq_masks, freq_width, d_model,
    fusion ("multiscale" | "frame"), windows, heads, cross, select, tcn_channels, tcn_blocks
    (None: all), kernel, causal, hidden (512), dropout.
    Set `model.generator` (a CPU torch.Generator) to draw the training views from it.
    """

    def __init__(
        self,
        *,
        dims: dict[str, Any],
        local: str | None = "views",
        local_views: int = 1,
        use_audio: bool = True,
        audio_crop: float = 0.75,
        freq_masks: int = 2,
        freq_width: float = 0.1,
        d_model: int = 256,
        windows: tuple[int, ...] | list[int] = (8, 16, 32),
        heads: int = 4,
        cross: bool = True,
        select: str = "soft",
        fusion: str = "multiscale",
        tcn_channels: tuple[int, ...] | list[int] = (256, 256, 256),
        tcn_blocks: int | None = None,
        kernel: int = 3,
        causal: bool = True,
        hidden: int = 512,
        dropout: float = 0.1,
    ):
        super().__init__()
        if local not in LOCAL_MODES:
            raise ValueError(f"fusion_tcn local must be one of {LOCAL_MODES}, got {local!r}")
        if local == "views" and "local" not in dims:
            log.warning(
                "fusion_tcn: no local views in this store's features (no batch key 'local'); "
                "running on the global view only. Map them with "
                "--set data.features.local=<store array path, e.g. visual/convnext/local>"
            )
            local = None
        self.local, self.use_audio = local, use_audio
        self.generator: torch.Generator | None = None
        mods = {"visual": dims["cls"]}
        self.required_inputs = {"cls"}
        if local == "views":
            mods["local"] = dims["local"]
            self.required_inputs |= {"local"}
            self.local_views = LocalViews(local_views)
        elif local is not None:
            mods["local"] = dims["patch"]
            self.required_inputs |= {"patch"} | ({"rois"} if local == "rois" else set())
        if use_audio:
            mods["audio"] = dims["audio"]
            self.required_inputs |= {"audio"}
            self.audio_views = AudioLocalViews(audio_crop, freq_masks, freq_width)
        if fusion not in FUSION_MODES:
            raise ValueError(f"fusion_tcn fusion must be one of {FUSION_MODES}, got {fusion!r}")
        if fusion == "frame":  # each frame alone: window 1, one scale, fixed equal weights
            self.fusion = MultiScaleFusion(
                mods, d_model, (1,), heads, dropout, False, "soft", "equal"
            )
        else:
            self.fusion = MultiScaleFusion(mods, d_model, windows, heads, dropout, cross, select)
        # Learned stand-ins: visual inputs of frames without a face, audio where it is missing.
        self.missing = nn.ParameterDict(
            {m: nn.Parameter(torch.zeros(dm)) for m, dm in mods.items()}
        )
        channels = list(tcn_channels)
        if tcn_blocks is not None:
            if not 0 <= tcn_blocks <= len(channels):
                raise ValueError(
                    f"fusion_tcn tcn_blocks must be in 0..{len(channels)} (tcn_channels), "
                    f"got {tcn_blocks}"
                )
            channels = channels[:tcn_blocks]
        self.tcn = TCN(d_model, channels, kernel, causal, dropout)  # no blocks: identity
        self.head = MLPHead(self.tcn.out_dim, dims.get("n_aus", 12), hidden, dropout)

    def _local(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.local == "views":
            return self.local_views(batch["local"].float(), self.generator)  # (B, T, Dl)
        patch = batch["patch"].float()  # (B, T, h, w, Dp)
        if self.local == "patch":
            return patch.mean(dim=(2, 3))  # (B, T, Dp)
        b, t = patch.shape[:2]
        pooled = roi_pool(patch.flatten(0, 1), batch["rois"].flatten(0, 1))  # (B*T, R, Dp)
        return pooled.mean(1).view(b, t, -1)  # (B, T, Dp)

    def forward_features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        feats = {"visual": batch["cls"].float()}  # (B, T, Dv)
        if self.local is not None:
            feats["local"] = self._local(batch)
        for m in list(feats):
            feats[m] = fill_invalid(feats[m], batch.get("face_valid"), self.missing[m])
        if self.use_audio:
            audio, valid = self.audio_views(
                batch["audio"].float(), batch.get("audio_valid"), self.generator, batch.get("mask")
            )  # (B, T, Da), (B, T)
            feats["audio"] = fill_invalid(audio, valid, self.missing["audio"])
        mask = batch.get("mask")
        x = self.fusion(feats, mask)  # (B, T, d)
        return self.tcn(x, mask)  # (B, T, C)
