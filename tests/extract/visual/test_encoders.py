"""Visual encoders on tiny random models that load through from_pretrained."""

from __future__ import annotations

import numpy as np
import pytest

from extract.encoders import VISUAL_ENCODERS, load_visual_encoder
from extract.encoders.hf_source import ModelSourceError, folder_content_hash


def _crops(n: int, size: int = 48) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 255, (n, size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", ["dinov2", "dinov2_registers"])
def test_dinov2_shapes_and_registers(tiny_models, name):
    enc = load_visual_encoder("dinov2", tiny_models[name], device="cpu", batch_size=2)
    assert enc.name == "dinov2" and enc.crop_size == 56
    assert enc.outputs == {"cls": (32,), "patch": (4, 4, 32)}
    out = enc.encode(_crops(5))  # resized 48 -> 56, three batches
    assert out["cls"].shape == (5, 32) and out["patch"].shape == (5, 4, 4, 32)
    assert out["cls"].dtype == np.float32 and np.isfinite(out["patch"]).all()
    fields = enc.fingerprint_fields()
    assert fields["registers_skipped"] == (4 if name == "dinov2_registers" else 0)
    assert fields["content_hash"] == folder_content_hash(tiny_models[name])
    assert {"crop_size", "dtype", "layer", "model"} <= set(fields)


def test_dinov2_patch_tokens_match_the_model(tiny_models):
    """Registers skipped: patch tokens are the last N tokens of the model's own output."""
    import torch
    from transformers import AutoModel

    path = tiny_models["dinov2_registers"]
    enc = load_visual_encoder("dinov2", path)
    crops = _crops(2, 56)
    out = enc.encode(crops)
    model = AutoModel.from_pretrained(path).eval()
    with torch.inference_mode():
        ref = model(pixel_values=enc.preprocess(crops)).last_hidden_state  # (2, 1 + 4 + 16, 32)
    np.testing.assert_allclose(out["cls"], ref[:, 0].numpy(), atol=1e-5)
    np.testing.assert_allclose(out["patch"].reshape(2, 16, 32), ref[:, 5:].numpy(), atol=1e-5)


def test_dinov2_chosen_layer_changes_output_and_fingerprint(tiny_models):
    last = load_visual_encoder("dinov2", tiny_models["dinov2"])
    first = load_visual_encoder("dinov2", tiny_models["dinov2"], layer=1)
    same_as_last = load_visual_encoder("dinov2", tiny_models["dinov2"], layer=-1)
    crops = _crops(2, 56)
    assert not np.allclose(last.encode(crops)["cls"], first.encode(crops)["cls"])
    np.testing.assert_allclose(last.encode(crops)["patch"], same_as_last.encode(crops)["patch"])
    assert first.fingerprint_fields()["layer"] == 1 and last.fingerprint_fields()["layer"] == 2
    with pytest.raises(ValueError, match="layer"):
        load_visual_encoder("dinov2", tiny_models["dinov2"], layer=7)


@pytest.mark.parametrize("local", ["views", "map", "crops", "none"])
def test_convnext_global_patch_and_local_views(tiny_models, local):
    enc = load_visual_encoder("convnext", tiny_models["convnext"], local=local)
    assert enc.crop_size == 64
    out = enc.encode(_crops(3, 64))
    assert out["cls"].shape == (3, 32) and out["patch"].shape == (3, 2, 2, 32)
    if local == "none":
        assert "local" not in out
    else:
        assert out["local"].shape == (3, 4, 32)
    assert enc.fingerprint_fields()["local"] == local


def test_missing_model_says_how_to_get_it(tmp_path):
    with pytest.raises(ModelSourceError, match="huggingface-cli download facebook/dinov2-base"):
        load_visual_encoder("dinov2", str(tmp_path / "no_such_model"))
    with pytest.raises(ModelSourceError, match="convnext"):
        load_visual_encoder("convnext", str(tmp_path / "nothing_here"))
    with pytest.raises(ModelSourceError, match="huggingface-cli"):  # offline, not in the cache
        load_visual_encoder("dinov2", "facebook/dinov2-not-cached")


def test_wrong_model_kind_and_bad_input(tiny_models):
    with pytest.raises(ModelSourceError, match="not DINOv2"):
        load_visual_encoder("dinov2", tiny_models["convnext"])
    enc = load_visual_encoder("dinov2", tiny_models["dinov2"])
    with pytest.raises(ValueError, match="uint8"):
        enc.encode(np.zeros((1, 56, 56, 3), np.float32))
    assert set(VISUAL_ENCODERS) >= {"dinov2"}


def test_tiny_models_are_deterministic_and_load_back(tmp_path):
    from transformers import AutoModel, WavLMModel, WhisperModel

    from extract.tiny_models import write_tiny_models

    a = write_tiny_models(tmp_path / "a", ("dinov2", "wavlm", "whisper"))
    b = write_tiny_models(tmp_path / "b", ("dinov2",))
    assert folder_content_hash(a["dinov2"]) == folder_content_hash(b["dinov2"])
    assert AutoModel.from_pretrained(a["dinov2"]).config.model_type == "dinov2"
    assert WavLMModel.from_pretrained(a["wavlm"]).config.hidden_size == 32
    assert WhisperModel.from_pretrained(a["whisper"]).config.num_mel_bins == 80
    with pytest.raises(ValueError, match="unknown tiny model"):
        write_tiny_models(tmp_path / "c", ("resnet",))


@pytest.mark.gpu
@pytest.mark.parametrize("kind, name", [("dinov2", "dinov2_registers"), ("convnext", "convnext")])
def test_gpu_autocast_agrees_with_cpu(tiny_models, kind, name):
    import torch

    cpu = load_visual_encoder(kind, tiny_models[name])
    gpu = load_visual_encoder(kind, tiny_models[name], device="cuda")
    assert gpu.compute_dtype in (torch.bfloat16, torch.float16)
    crops = _crops(4, gpu.crop_size)
    a, b = cpu.encode(crops), gpu.encode(crops)
    for key in a:
        assert b[key].dtype == np.float32 and b[key].shape == a[key].shape
        np.testing.assert_allclose(b[key], a[key], atol=0.1, rtol=0.1)
