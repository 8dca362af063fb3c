"""Tiny random DINOv2, ConvNeXt, WavLM and Whisper folders for the demo and the tests.

Each folder is written by `save_pretrained` with its preprocessor config, so it
loads through exactly the code path of a real downloaded model. Weights are
random but deterministic (seeded), so two calls write identical folders.
"""

from __future__ import annotations

import os

TINY_SEED = 0
TINY_NAMES = ("dinov2", "dinov2_registers", "convnext", "wavlm", "whisper")


def _seed() -> None:
    import torch

    torch.manual_seed(TINY_SEED)


def _image_processor(name: str):
    """The PIL-backed image processor class when this transformers has one (no torchvision needed)."""
    import transformers

    return getattr(transformers, name + "Pil", None) or getattr(transformers, name)


# Sizes: "test" is the smallest that exercises every code path; "demo" gives the synthetic
# world a finer patch grid (112 px crops -> 8 x 8 tokens) so region features can be local.
DINOV2_SIZES = {
    "test": dict(hidden_size=32, image_size=56),
    "demo": dict(hidden_size=64, image_size=112),
}


def _dinov2(path: str, registers: bool, size: str = "test") -> None:
    from transformers import (
        Dinov2Config,
        Dinov2Model,
        Dinov2WithRegistersConfig,
        Dinov2WithRegistersModel,
    )

    side = DINOV2_SIZES[size]["image_size"]
    common = dict(
        hidden_size=DINOV2_SIZES[size]["hidden_size"],
        num_hidden_layers=2,
        num_attention_heads=2,
        mlp_ratio=2,
        image_size=side,
        patch_size=14,
    )
    processor_cls = _image_processor("BitImageProcessor")
    _seed()
    if registers:
        model = Dinov2WithRegistersModel(Dinov2WithRegistersConfig(num_register_tokens=4, **common))
    else:
        model = Dinov2Model(Dinov2Config(**common))
    model.save_pretrained(path)
    processor_cls(
        size={"shortest_edge": side},
        crop_size={"height": side, "width": side},
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    ).save_pretrained(path)


def _convnext(path: str) -> None:
    from transformers import ConvNextConfig, ConvNextModel

    processor_cls = _image_processor("ConvNextImageProcessor")
    _seed()
    cfg = ConvNextConfig(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], image_size=64)
    ConvNextModel(cfg).save_pretrained(path)
    processor_cls(size={"shortest_edge": 64}).save_pretrained(path)


def _wavlm(path: str) -> None:
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMModel

    _seed()
    cfg = WavLMConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(32, 32, 32, 32, 32, 32, 32),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        num_buckets=32,
        max_bucket_distance=100,
    )
    WavLMModel(cfg).save_pretrained(path)
    Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=16000,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=True,
    ).save_pretrained(path)


def _whisper(path: str, zero_positions: bool = False) -> None:
    """`zero_positions`: without position embeddings, silent frames are identical and
    sounds stand out wherever they are (what the audio alignment tests look for)."""
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    _seed()
    cfg = WhisperConfig(
        vocab_size=128,
        num_mel_bins=80,
        d_model=32,
        encoder_layers=2,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_source_positions=1500,
        max_target_positions=32,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
        suppress_tokens=[],
        begin_suppress_tokens=[],
    )
    model = WhisperModel(cfg)
    if zero_positions:
        with torch.no_grad():
            model.encoder.embed_positions.weight.zero_()
    model.save_pretrained(path)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(path)


def write_tiny_models(
    out_dir: str | os.PathLike,
    names: tuple[str, ...] = TINY_NAMES,
    size: str = "test",
    *,
    zero_whisper_positions: bool = False,
) -> dict[str, str]:
    """Write tiny random models under out_dir/<name>; returns name -> folder path.

    `size` is "test" (smallest) or "demo" (a finer DINOv2 patch grid for the synthetic world);
    `zero_whisper_positions` writes a Whisper without position embeddings.
    """
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if size not in DINOV2_SIZES:
        raise ValueError(f"unknown size {size!r}; known: {sorted(DINOV2_SIZES)}")
    writers = {
        "dinov2": lambda p: _dinov2(p, registers=False, size=size),
        "dinov2_registers": lambda p: _dinov2(p, registers=True, size=size),
        "convnext": _convnext,
        "wavlm": _wavlm,
        "whisper": lambda p: _whisper(p, zero_positions=zero_whisper_positions),
    }
    unknown = set(names) - set(writers)
    if unknown:
        raise ValueError(f"unknown tiny model(s) {sorted(unknown)}; known: {list(writers)}")
    paths: dict[str, str] = {}
    for name in names:
        path = os.path.join(os.path.abspath(out_dir), name)
        os.makedirs(path, exist_ok=True)
        writers[name](path)
        paths[name] = path
    return paths
