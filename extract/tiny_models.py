"""Random-weight DINOv2, ConvNeXt, WavLM and Whisper folders for the demo and the tests.

Each folder is written by `save_pretrained` with its preprocessor config, so it
loads through exactly the code path of a real downloaded model. Weights are
random but deterministic (seeded), so two calls write identical folders.

Sizes: "test" is the smallest that exercises every code path; "demo" gives the synthetic
world a finer patch grid (112 px crops -> 8 x 8 tokens) so region features can be local;
"base" has the architecture, config and preprocessor values of the published
facebook/dinov2-base (and dinov2-with-registers-base), microsoft/wavlm-base-plus,
facebook/convnext-base-224 and openai/whisper-base, written from the transformers config
classes (nothing is downloaded): real-size memory, time and array shapes without the weights.
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


SIZES = ("test", "demo", "base")
DINOV2_SIZES = {
    "test": dict(hidden_size=32, image_size=56),
    "demo": dict(hidden_size=64, image_size=112),
}
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
BICUBIC = 3  # PIL resample code the published image processors use


def _dinov2(path: str, registers: bool, size: str = "test") -> None:
    from transformers import (
        Dinov2Config,
        Dinov2Model,
        Dinov2WithRegistersConfig,
        Dinov2WithRegistersModel,
    )

    processor_cls = _image_processor("BitImageProcessor")
    if size == "base":  # facebook/dinov2-base: ViT-B/14, 16 x 16 patches at its 224 px crop
        common = dict(
            hidden_size=768,
            num_hidden_layers=12,
            num_attention_heads=12,
            mlp_ratio=4,
            image_size=518,  # position embeddings for 37 x 37, interpolated to the input
            patch_size=14,
            hidden_act="gelu",
            layer_norm_eps=1e-6,
            layerscale_value=1.0,
            qkv_bias=True,
            use_swiglu_ffn=False,
            drop_path_rate=0.0,
        )
        processor = processor_cls(
            size={"shortest_edge": 256},
            crop_size={"height": 224, "width": 224},
            resample=BICUBIC,
            image_mean=IMAGENET_MEAN,
            image_std=IMAGENET_STD,
        )
    else:
        side = DINOV2_SIZES[size]["image_size"]
        common = dict(
            hidden_size=DINOV2_SIZES[size]["hidden_size"],
            num_hidden_layers=2,
            num_attention_heads=2,
            mlp_ratio=2,
            image_size=side,
            patch_size=14,
        )
        processor = processor_cls(
            size={"shortest_edge": side},
            crop_size={"height": side, "width": side},
            image_mean=IMAGENET_MEAN,
            image_std=IMAGENET_STD,
        )
    _seed()
    if registers:
        model = Dinov2WithRegistersModel(Dinov2WithRegistersConfig(num_register_tokens=4, **common))
    else:
        model = Dinov2Model(Dinov2Config(**common))
    model.save_pretrained(path)
    processor.save_pretrained(path)


def _convnext(path: str, size: str = "test") -> None:
    from transformers import ConvNextConfig, ConvNextModel

    processor_cls = _image_processor("ConvNextImageProcessor")
    _seed()
    if size == "base":  # facebook/convnext-base-224
        cfg = ConvNextConfig(
            hidden_sizes=[128, 256, 512, 1024],
            depths=[3, 3, 27, 3],
            layer_scale_init_value=1e-6,
            drop_path_rate=0.0,
            image_size=224,
        )
        processor = processor_cls(
            size={"shortest_edge": 224},
            crop_pct=0.875,
            resample=BICUBIC,
            image_mean=IMAGENET_MEAN,
            image_std=IMAGENET_STD,
        )
    else:
        cfg = ConvNextConfig(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], image_size=64)
        processor = processor_cls(size={"shortest_edge": 64})
    ConvNextModel(cfg).save_pretrained(path)
    processor.save_pretrained(path)


def _wavlm(path: str, size: str = "test") -> None:
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMModel

    _seed()
    if size == "base":  # microsoft/wavlm-base-plus (its config.json and preprocessor_config.json)
        cfg = WavLMConfig(
            hidden_size=768,
            num_hidden_layers=12,
            num_attention_heads=12,
            intermediate_size=3072,
            hidden_act="gelu",
            layer_norm_eps=1e-5,
            feat_extract_norm="group",
            feat_extract_activation="gelu",
            conv_dim=(512,) * 7,
            conv_stride=(5, 2, 2, 2, 2, 2, 2),
            conv_kernel=(10, 3, 3, 3, 3, 2, 2),
            conv_bias=False,
            num_conv_pos_embeddings=128,
            num_conv_pos_embedding_groups=16,
            num_buckets=320,
            max_bucket_distance=800,
            do_stable_layer_norm=False,
            hidden_dropout=0.1,
            attention_dropout=0.1,
            activation_dropout=0.0,
            feat_proj_dropout=0.1,
            final_dropout=0.0,
            layerdrop=0.05,
            mask_time_prob=0.05,
            vocab_size=32,
        )
        do_normalize = False
    else:
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
        do_normalize = True
    WavLMModel(cfg).save_pretrained(path)
    Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=16000,
        padding_value=0.0,
        do_normalize=do_normalize,
        return_attention_mask=True,
    ).save_pretrained(path)


def _whisper(path: str, zero_positions: bool = False, size: str = "test") -> None:
    """`zero_positions`: without position embeddings, silent frames are identical and
    sounds stand out wherever they are (what the audio alignment tests look for)."""
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    _seed()
    if size == "base":  # openai/whisper-base
        cfg = WhisperConfig(
            vocab_size=51865,
            num_mel_bins=80,
            d_model=512,
            encoder_layers=6,
            decoder_layers=6,
            encoder_attention_heads=8,
            decoder_attention_heads=8,
            encoder_ffn_dim=2048,
            decoder_ffn_dim=2048,
            max_source_positions=1500,
            max_target_positions=448,
            pad_token_id=50257,
            bos_token_id=50257,
            eos_token_id=50257,
            decoder_start_token_id=50258,
            suppress_tokens=[],
            begin_suppress_tokens=[220, 50257],
        )
    else:
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
    """Write random-weight models under out_dir/<name>; returns name -> folder path.

    `size` is "test" (smallest), "demo" (a finer DINOv2 patch grid for the synthetic world)
    or "base" (the published base models' architecture: about 350 MB a model);
    `zero_whisper_positions` writes a Whisper without position embeddings.
    """
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; known: {list(SIZES)}")
    writers = {
        "dinov2": lambda p: _dinov2(p, registers=False, size=size),
        "dinov2_registers": lambda p: _dinov2(p, registers=True, size=size),
        "convnext": lambda p: _convnext(p, size="base" if size == "base" else "test"),
        "wavlm": lambda p: _wavlm(p, size="base" if size == "base" else "test"),
        "whisper": lambda p: _whisper(
            p, zero_positions=zero_whisper_positions, size="base" if size == "base" else "test"
        ),
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
