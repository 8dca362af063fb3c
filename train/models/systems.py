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
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from train.config import choice
from train.models import ModelConfig, register_model
from train.models.ag_ssm import AGSSMBlock
from train.models.audio_views import AudioLocalViews
from train.models.fusion import MultiScaleFusion
from train.models.heads import FeaturesHeadModel, MLPHead
from train.models.hga import HGA, roi_pool
from train.models.local_views import LocalViews
from train.models.missing import fill_invalid
from train.models.scan import SCAN_IMPLS
from train.models.tcn import TCN

log = logging.getLogger(__name__)


@dataclass
class HGAConfig(ModelConfig):
    """The per-frame HGA encoder shared by the HGA systems (hga.py), and what is appended to it."""

    # HGA width (hga_agssm: also the AG-SSM width).
    d_model: int = 128
    # attention heads of every HGA layer.
    heads: int = 4
    # HGA cross-attention layers over the patch and ROI tokens.
    hga_layers: int = 1
    # ROI sample points per side (samples x samples per region).
    samples: int = 2
    # "mean" over the AU query outputs (d_model per frame) or "flat" (12 * d_model).
    pool: str = choice("mean", ("mean", "flat"))
    # append the CLS feature to each frame's HGA features.
    use_cls: bool = False
    # append the audio features to each frame's visual features.
    use_audio: bool = False


@dataclass
class HGAMLPConfig(HGAConfig):
    """hga_mlp: the per-frame HGA encoder and the MLP head, nothing over time."""


@dataclass
class HGAAGSSMConfig(HGAConfig):
    """hga_agssm: the per-frame HGA encoder, AG-SSM layers over time, the MLP head."""

    # append the audio features to each frame's visual features (as hga_mlp's use_audio).
    use_audio: bool = True
    # AG-SSM blocks.
    n_layers: int = 2
    # SSM state size per channel.
    d_state: int = 16
    # inner width of each block as a multiple of d_model.
    expand: int = 2
    # kernel of the depthwise convolution over frames before the scan.
    d_conv: int = 4
    # pad that convolution on the left only (else centred); the scans keep their directions.
    causal: bool = False
    # audio steers the selection (False: a plain Mamba whose selection sees only the visual stream).
    guided: bool = True
    # the read-out C sees the audio too (else C comes from the visual stream only).
    guide_c: bool = True
    # a backward scan beside the forward one.
    bidirectional: bool = True
    # selective-scan implementation (scan.py); "auto": cuda or fused by device (AUWILD_SCAN_IMPL).
    scan_impl: str = choice("auto", ("auto", *SCAN_IMPLS))


class _FrameHGA(nn.Module):
    """HGA applied to every frame of a window: batch -> (B, T, F), with CLS (use_cls) and audio
    (use_audio) appended. Frames without a face get the learned no-face vector in place of their
    visual part (their audio stays); frames without audio the learned no-audio vector in place
    of their audio part."""

    def __init__(self, cfg: HGAConfig, dims: dict[str, Any]):
        super().__init__()
        self.hga = HGA(
            dims["patch"],
            dims["n_rois"],
            d_model=cfg.d_model,
            heads=cfg.heads,
            layers=cfg.hga_layers,
            samples=cfg.samples,
            pool=cfg.pool,
            dropout=0.0,
        )
        use_cls, use_audio = cfg.use_cls, cfg.use_audio
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


@register_model("hga_mlp", HGAMLPConfig)
class HGAMLP(FeaturesHeadModel):
    """HGA spatial encoder per frame, optionally concatenated with CLS and audio, then an MLP
    head (settings: HGAMLPConfig)."""

    def __init__(self, cfg: HGAMLPConfig, dims: dict[str, Any]):
        super().__init__()
        self.frames = _FrameHGA(cfg, dims)
        self.required_inputs = set(self.frames.required_inputs)
        self.norm = nn.LayerNorm(self.frames.out_dim)
        self.head = MLPHead(self.frames.out_dim, dims.get("n_aus", 12), cfg.hidden, cfg.dropout)

    def forward_features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.norm(self.frames(batch))  # (B, T, F)


@register_model("hga_agssm", HGAAGSSMConfig)
class HGAAGSSM(FeaturesHeadModel):
    """HGA per frame, then n bidirectional AG-SSM layers over time guided by audio, MLP head
    (settings: HGAAGSSMConfig).

    Audio reaches the sequence two ways: concatenated to each frame's HGA features before the
    input projection (use_audio, as in hga_mlp, so the +AG-SSM row keeps what +HGA had), and
    through the selection of every AG-SSM layer (guided). The guidance alone only modulates what
    the visual state keeps; it cannot carry what the audio says about the mouth by itself.
    """

    def __init__(self, cfg: HGAAGSSMConfig, dims: dict[str, Any]):
        super().__init__()
        self.frames = _FrameHGA(cfg, dims)
        self.guided = cfg.guided
        self.in_norm = nn.LayerNorm(self.frames.out_dim)
        self.in_proj = nn.Linear(self.frames.out_dim, cfg.d_model)
        self.layers = nn.ModuleList(
            AGSSMBlock(
                cfg.d_model,
                d_audio=dims.get("audio", 0) if cfg.guided else 0,
                d_state=cfg.d_state,
                expand=cfg.expand,
                d_conv=cfg.d_conv,
                causal=cfg.causal,
                guided=cfg.guided,
                guide_c=cfg.guide_c,
                bidirectional=cfg.bidirectional,
                scan_impl=cfg.scan_impl,
            )
            for _ in range(cfg.n_layers)
        )
        self.norm = nn.LayerNorm(cfg.d_model)
        self.required_inputs = self.frames.required_inputs | ({"audio"} if cfg.guided else set())
        self.head = MLPHead(cfg.d_model, dims.get("n_aus", 12), cfg.hidden, cfg.dropout)

    def forward_features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = self.in_proj(self.in_norm(self.frames(batch)))  # (B, T, d)
        audio = batch["audio"].float() if self.guided else None  # (B, T, Da)
        for layer in self.layers:
            x = layer(x, audio, batch.get("audio_valid"), batch.get("mask"))  # (B, T, d)
        return self.norm(x)


LOCAL_MODES = (None, "views", "patch", "rois")
FUSION_MODES = ("multiscale", "frame")


@dataclass
class FusionTCNConfig(ModelConfig):
    """fusion_tcn (ABAW8): global and local visual views and audio, multi-scale fusion, TCN."""

    # local visual view: "views" (the store's local views), "patch" / "rois" (from the patch
    # tokens), null (global view only).
    local: str | None = choice("views", LOCAL_MODES)
    # local views drawn at random per training window (eval: the mean of all).
    local_views: int = 1
    # fuse the audio features.
    use_audio: bool = True
    # training: random audio time crop to at least this fraction of the window.
    audio_crop: float = 0.75
    # training: frequency bands zeroed per window.
    freq_masks: int = 2
    # training: each band at most this fraction of the audio channels.
    freq_width: float = 0.1
    # fusion width.
    d_model: int = 256
    # fusion window sizes in frames.
    windows: tuple[int, ...] = (8, 16, 32)
    # attention heads of the fusion.
    heads: int = 4
    # cross-modal attention beside self-attention in the fusion.
    cross: bool = True
    # per-segment window choice: "soft" (weighted) or "hard" (one window).
    select: str = choice("soft", ("soft", "hard"))
    # "multiscale": the windowed fusion above; "frame": each frame fused alone (window 1, one
    # scale, no cross-modal attention, equal modality weights), the ablation's frame-wise rows.
    fusion: str = choice("multiscale", FUSION_MODES)
    # TCN channels per level.
    tcn_channels: tuple[int, ...] = (256, 256, 256)
    # TCN levels used, the first n of tcn_channels (null: all; 0: no TCN, fused frames to the head).
    tcn_blocks: int | None = None
    # TCN kernel size.
    kernel: int = 3
    # causal TCN (the fusion's windows stay centred).
    causal: bool = True


@register_model("fusion_tcn", FusionTCNConfig)
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

    Settings: FusionTCNConfig. Set `model.generator` (a CPU torch.Generator) to draw the
    training views from it.
    """

    def __init__(self, cfg: FusionTCNConfig, dims: dict[str, Any]):
        super().__init__()
        local, use_audio, d_model, dropout = cfg.local, cfg.use_audio, cfg.d_model, cfg.dropout
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
            self.local_views = LocalViews(cfg.local_views)
        elif local is not None:
            mods["local"] = dims["patch"]
            self.required_inputs |= {"patch"} | ({"rois"} if local == "rois" else set())
        if use_audio:
            mods["audio"] = dims["audio"]
            self.required_inputs |= {"audio"}
            self.audio_views = AudioLocalViews(cfg.audio_crop, cfg.freq_masks, cfg.freq_width)
        if cfg.fusion == "frame":  # each frame alone: window 1, one scale, fixed equal weights
            self.fusion = MultiScaleFusion(
                mods, d_model, (1,), cfg.heads, dropout, False, "soft", "equal"
            )
        else:
            self.fusion = MultiScaleFusion(
                mods, d_model, cfg.windows, cfg.heads, dropout, cfg.cross, cfg.select
            )
        # Learned stand-ins: visual inputs of frames without a face, audio where it is missing.
        self.missing = nn.ParameterDict(
            {m: nn.Parameter(torch.zeros(dm)) for m, dm in mods.items()}
        )
        channels = list(cfg.tcn_channels)
        if cfg.tcn_blocks is not None:
            if not 0 <= cfg.tcn_blocks <= len(channels):
                raise ValueError(
                    f"fusion_tcn tcn_blocks must be in 0..{len(channels)} (tcn_channels), "
                    f"got {cfg.tcn_blocks}"
                )
            channels = channels[: cfg.tcn_blocks]
        self.tcn = TCN(d_model, channels, cfg.kernel, cfg.causal, dropout)  # no blocks: identity
        self.head = MLPHead(self.tcn.out_dim, dims.get("n_aus", 12), cfg.hidden, cfg.dropout)

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
