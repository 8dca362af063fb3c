"""What every visual encoder shares: crops in, named float32 arrays out.

Aligned face crops (uint8 RGB) are resized to the model's input size (no centre
crop: the face is already framed), normalised with the model's own mean/std
(preprocessor_config.json, else ImageNet's), and run in batches under
`torch.inference_mode`, with bf16/fp16 autocast on a GPU. A subclass only says how
pixel values become {"cls": (B, D), "patch": (B, h, w, D), ...}.

With `token_storage` set (a TokenStorage: int8 and/or pooled), patch tokens are quantised and
pooled on the device, in the output path, before the copy to the host: `encode` then returns
them as EncodedTokens (extract/store/quantize.py), which the store writer keeps as they are.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from extract.encoders.hf_source import (
    ModelSourceError,
    check_source,
    load_pretrained,
    read_source_json,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DTYPES = ("auto", "float32", "bfloat16", "float16")


def preprocessor_settings(source: str, default_size: int) -> tuple[tuple, tuple, int]:
    """(mean, std, input size) from the model's preprocessor_config.json, else ImageNet."""
    cfg = read_source_json(source, "preprocessor_config.json") or {}
    mean = tuple(cfg.get("image_mean") or IMAGENET_MEAN)
    std = tuple(cfg.get("image_std") or IMAGENET_STD)
    size = default_size
    for key in ("crop_size", "size"):
        value = cfg.get(key)
        if isinstance(value, int):
            size = value
            break
        if isinstance(value, dict):
            picked = value.get("height") or value.get("shortest_edge")
            if picked:
                size = int(picked)
                break
    return mean, std, int(size)


def resolve_dtype(dtype: str, device: str):
    """Compute dtype: "auto" is bf16 on GPUs that have it, else fp16; always fp32 on the CPU."""
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if not str(device).startswith("cuda"):
        return torch.float32  # autocast is used on GPUs only
    if dtype == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return getattr(torch, dtype)


class VisualEncoder:
    """Base class: preprocessing, batching, autocast; subclasses implement `_forward`."""

    name = "visual"
    what = "visual"  # model family named in errors, e.g. "DINOv2"
    example_id = ""  # hub id named in the error for a missing model
    model_types: tuple[str, ...] = ()  # config.model_type values this class accepts

    @classmethod
    def from_source(cls, source: str, **kwargs: Any) -> VisualEncoder:
        """Load the model behind a hub id or folder, check it is of this family, wrap it."""
        from transformers import AutoModel

        source = check_source(source, cls.what, cls.example_id)
        model = load_pretrained(AutoModel, source, cls.what, cls.example_id)
        if model.config.model_type not in cls.model_types:
            raise ModelSourceError(
                f"{source!r} is a {model.config.model_type!r} model, "
                f"not {cls.what} ({cls.model_types})"
            )
        return cls(model, source, **kwargs)

    def __init__(
        self,
        model: Any,
        source: str,
        *,
        device: str = "cpu",
        crop_size: int | None = None,
        default_size: int = 224,
        dtype: str = "auto",
        batch_size: int = 64,
        token_storage: Any = None,
    ) -> None:
        import torch

        self.token_storage = token_storage  # TokenStorage: encode patch tokens on the device
        self.source = source
        self.device = str(device)
        mean, std, size = preprocessor_settings(source, default_size)
        self.crop_size = int(crop_size or size)
        self.compute_dtype = resolve_dtype(dtype, self.device)
        self.batch_size = int(batch_size)
        self.model = model.to(self.device).eval()
        self._mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._outputs: dict[str, tuple[int, ...]] | None = None

    # -- subclass surface ---------------------------------------------------------------------
    def _forward(self, pixels) -> dict[str, Any]:
        """pixels float (B, 3, S, S) normalised -> {"cls": (B, D), "patch": (B, h, w, D), ...}."""
        raise NotImplementedError

    def encoder_fields(self) -> dict[str, Any]:
        return {}

    # -- shared ---------------------------------------------------------------------------------
    @property
    def outputs(self) -> dict[str, tuple[int, ...]]:
        """Per-frame output shapes, e.g. {"cls": (D,), "patch": (h, w, D)} (one dry run)."""
        if self._outputs is None:
            probe = self.encode(np.zeros((1, self.crop_size, self.crop_size, 3), np.uint8))
            self._outputs = {k: tuple(v.shape[1:]) for k, v in probe.items()}
        return self._outputs

    def fingerprint_fields(self) -> dict[str, Any]:
        from extract.encoders.hf_source import source_fields

        return {
            "encoder": self.name,
            **source_fields(self.source, self.model),
            "crop_size": self.crop_size,
            "dtype": str(self.compute_dtype).replace("torch.", ""),
            "mean": [round(float(v), 6) for v in self._mean.flatten().tolist()],
            "std": [round(float(v), 6) for v in self._std.flatten().tolist()],
            **self.encoder_fields(),
        }

    def preprocess(self, crops: np.ndarray):
        """uint8 (n, H, W, 3) -> normalised float32 (n, 3, S, S) on the device."""
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(np.ascontiguousarray(crops)).to(self.device)  # (n, H, W, 3)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)  # (n, 3, H, W)
        if x.shape[-2:] != (self.crop_size, self.crop_size):
            x = F.interpolate(
                x,
                size=(self.crop_size, self.crop_size),
                mode="bilinear",
                antialias=True,
                align_corners=False,
            )  # (n, 3, S, S)
        return (x - self._mean) / self._std

    def encode(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        """Face crops uint8 (n, H, W, 3) RGB -> {"cls": float32 (n, D), "patch": (n, h, w, D), ...}."""
        import torch

        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[-1] != 3 or crops.dtype != np.uint8:
            raise ValueError(f"crops must be uint8 (n, H, W, 3), got {crops.dtype} {crops.shape}")
        parts: dict[str, list[np.ndarray]] = {}
        use_autocast = self.compute_dtype != torch.float32 and self.device.startswith("cuda")
        with torch.inference_mode():
            for lo in range(0, len(crops), self.batch_size):
                pixels = self.preprocess(crops[lo : lo + self.batch_size])
                if use_autocast:
                    with torch.autocast("cuda", dtype=self.compute_dtype):
                        out = self._forward(pixels)
                else:
                    out = self._forward(pixels)
                for key, value in out.items():
                    parts.setdefault(key, []).append(self._to_host(key, value))
        if not parts:
            return {k: self._empty(k, s) for k, s in self.outputs.items()}
        return {k: _join(v) for k, v in parts.items()}

    def _to_host(self, key: str, value):
        """One output tensor -> host: float32, or EncodedTokens for patch tokens to encode."""
        if key == "patch" and self.token_storage is not None:
            from extract.store.quantize import EncodedTokens

            return EncodedTokens.from_torch(self.token_storage, value)  # (B, h', w', D) on host
        return value.float().cpu().numpy()

    def _empty(self, key: str, shape: tuple[int, ...]):
        import torch

        return self._to_host(key, torch.zeros((0, *shape)))


def _join(parts: list):
    """Concatenate per-batch host outputs (arrays, or EncodedTokens)."""
    from extract.store.quantize import EncodedTokens

    if isinstance(parts[0], EncodedTokens):
        return EncodedTokens.concat(parts)
    return np.concatenate(parts).astype(np.float32, copy=False)
