"""Every registered model at tiny sizes: forward, backward, contract; plus block behaviour."""

from __future__ import annotations

import pytest
import torch

from train.models import MODEL_REGISTRY, _import_all, build_model
from train.models.ag_ssm import AGSSMBlock

_import_all()

DIMS = {
    "cls": 16,
    "patch": 8,
    "grid": (4, 4),
    "audio": 6,
    "local": 10,
    "n_rois": 5,
    "n_aus": 12,
}

# Tiny settings per registered model; a model missing here fails the coverage test.
TINY = {
    "frame_mlp": [{"hidden": 16}, {"hidden": 16, "use_audio": True}],
    "hga_mlp": [
        {"d_model": 16, "heads": 2, "hidden": 16},
        {
            "d_model": 16,
            "heads": 2,
            "hidden": 16,
            "use_audio": True,
            "use_cls": True,
            "pool": "flat",
        },
    ],
    "hga_agssm": [
        {"d_model": 16, "heads": 2, "n_layers": 2, "d_state": 4, "hidden": 16},
        {"d_model": 16, "heads": 2, "n_layers": 1, "d_state": 4, "hidden": 16, "guided": False},
        {
            "d_model": 8,
            "heads": 2,
            "n_layers": 1,
            "d_state": 2,
            "guided": False,
            "use_audio": False,
        },
        {"d_model": 8, "heads": 2, "n_layers": 1, "d_state": 2, "hidden": 8, "guide_c": False},
        {
            "d_model": 8,
            "heads": 2,
            "d_state": 4,
            "hidden": 8,
            "causal": True,
            "bidirectional": False,
        },
    ],
    "fusion_tcn": [
        {"d_model": 16, "windows": (2, 4), "heads": 2, "tcn_channels": (16, 16), "hidden": 16},
        {
            "d_model": 16,
            "windows": (3,),
            "heads": 2,
            "tcn_channels": (8,),
            "local": "rois",
            "causal": False,
            "cross": False,
        },
        {
            "d_model": 16,
            "windows": (4,),
            "heads": 2,
            "tcn_channels": (8,),
            "local": "patch",
            "use_audio": False,
        },
        {
            "d_model": 16,
            "windows": (2, 6),
            "heads": 2,
            "tcn_channels": (8, 8),
            "local_views": 2,
            "select": "hard",
            "audio_crop": 0.5,
            "freq_masks": 3,
            "freq_width": 0.5,
        },
        {"d_model": 8, "windows": (3,), "heads": 2, "tcn_channels": (8,), "local": None},
    ],
}


def fake_batch(b=2, t=7, grid=(4, 4), seed=0, dims=DIMS):
    """A batch as the trainer builds it: int8 tokens dequantised with a per-token scale."""
    g = torch.Generator().manual_seed(seed)
    h, w = grid
    q = torch.randint(-127, 128, (b, t, h, w, dims["patch"]), generator=g).to(torch.int8)
    scale = torch.rand(b, t, h, w, 1, generator=g) * 0.05 + 0.01
    lo = torch.rand(b, t, dims["n_rois"], 2, generator=g) * 0.6
    size = torch.rand(b, t, dims["n_rois"], 2, generator=g) * 0.3 + 0.05
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[-1, -2:] = False  # the last window is padded
    face_valid = torch.ones(b, t, dtype=torch.bool)
    face_valid[0, 2] = False
    return {
        "cls": torch.randn(b, t, dims["cls"], generator=g),
        "patch": q.float() * scale,  # (B, T, h, w, Dp)
        "rois": torch.cat([lo, lo + size], dim=-1),  # (B, T, R, 4)
        "audio": torch.randn(b, t, dims["audio"], generator=g),
        "local": torch.randn(b, t, 4, dims["local"], generator=g),  # (B, T, V, Dl)
        "audio_valid": torch.rand(b, t, generator=g) > 0.2,
        "face_valid": face_valid,
        "mask": mask,
    }


def test_every_registered_model_has_tiny_settings():
    assert set(MODEL_REGISTRY) >= {"frame_mlp", "hga_mlp", "hga_agssm", "fusion_tcn"}
    assert set(TINY) == set(MODEL_REGISTRY)


CASES = [(name, kw) for name in sorted(MODEL_REGISTRY) for kw in TINY.get(name, [{}])]


@pytest.mark.parametrize("grid", [(4, 4), (2, 3)], ids=["grid4x4", "pooled2x3"])
@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_model_forward_backward(name, kwargs, grid):
    torch.manual_seed(0)
    dims = {**DIMS, "grid": grid}
    model = build_model({"name": name, **kwargs}, dims)
    full = fake_batch(grid=grid)
    batch = {
        k: v for k, v in full.items() if k in model.required_inputs or k.endswith(("valid", "mask"))
    }
    assert model.required_inputs <= set(full)
    model.eval()
    with torch.no_grad():
        feats = model.forward_features(batch)
        assert feats.shape[:2] == (2, 7)
        logits = model.forward_head(feats)
        torch.testing.assert_close(model(batch), logits)
    assert logits.shape == (2, 7, 12)
    assert torch.isfinite(logits).all()
    model.train()
    model(batch).square().mean().backward()
    n_grad = sum(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert n_grad > 0.5 * len(list(model.parameters())), "most parameters should get gradients"


@pytest.mark.parametrize("name,kwargs", [c for c in CASES if c[0] != "frame_mlp"])
def test_padding_does_not_change_real_frames(name, kwargs):
    """Frames past a window's end (mask False) must not change the real frames' outputs."""
    torch.manual_seed(0)
    model = build_model({"name": name, **kwargs}, DIMS).eval()
    batch = fake_batch(b=1, t=9, seed=4)
    batch["mask"][:] = True
    batch["face_valid"][:] = True
    short = {k: v[:, :6] for k, v in batch.items()}
    padded = {k: v.clone() for k, v in batch.items()}
    padded["mask"][:, 6:] = False
    for k in ("cls", "patch", "audio", "local"):
        padded[k][:, 6:] = torch.randn_like(padded[k][:, 6:]) * 100  # garbage in the padding
    with torch.no_grad():
        a = model(short)
        b = model(padded)[:, :6]
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


AUDIO_CASES = [
    (n, kw) for n, kw in CASES if "audio" in build_model({"name": n, **kw}, DIMS).required_inputs
]


@pytest.mark.parametrize("name,kwargs", AUDIO_CASES)
def test_invalid_audio_never_reaches_the_output(name, kwargs):
    """Every system that reads audio: with audio_valid all False, garbage audio features give
    the same outputs as other garbage (the learned no-audio vector stands in)."""
    torch.manual_seed(0)
    model = build_model({"name": name, **kwargs}, DIMS).eval()
    batch = fake_batch(b=2, t=8, seed=5)
    batch["audio_valid"][:] = False
    other = {**batch, "audio": torch.randn_like(batch["audio"]) * 50}
    with torch.no_grad():
        a, b = model(batch), model(other)
    torch.testing.assert_close(a, b)
    batch["audio_valid"][:] = True  # and the audio does matter when it is valid
    other["audio_valid"] = batch["audio_valid"]
    with torch.no_grad():
        assert (model(batch) - model(other)).abs().max() > 1e-5


def test_guided_agssm_depends_on_audio_and_plain_does_not():
    torch.manual_seed(0)
    x = torch.randn(2, 10, 8)
    audio = torch.randn(2, 10, 5)
    other = audio.clone()
    other[:, 3:6] = torch.randn(2, 3, 5)
    guided = AGSSMBlock(8, d_audio=5, d_state=4, guided=True).eval()
    plain = AGSSMBlock(8, d_audio=0, d_state=4, guided=False).eval()
    with torch.no_grad():
        g1, g2 = guided(x, audio), guided(x, other)
        p1, p2 = plain(x, audio), plain(x, other)
    assert (g1 - g2).abs().max() > 1e-4
    # Bidirectional: frames before and after the changed audio both feel it.
    assert (g1 - g2)[:, 0].abs().max() > 1e-6 and (g1 - g2)[:, -1].abs().max() > 1e-6
    torch.testing.assert_close(p1, p2)


def test_hga_agssm_audio_paths():
    """use_audio feeds the audio into the frame features; guided only into the selection. With
    both off the system is visual-only and does not ask for audio."""
    batch = fake_batch(b=1, t=6, seed=2)
    other = {**batch, "audio": torch.randn_like(batch["audio"])}
    kw = {"d_model": 8, "heads": 2, "n_layers": 1, "d_state": 2, "hidden": 8}
    for use_audio, guided in [(True, False), (False, True), (False, False)]:
        torch.manual_seed(0)
        spec = {"name": "hga_agssm", "use_audio": use_audio, "guided": guided, **kw}
        model = build_model(spec, DIMS).eval()
        assert ("audio" in model.required_inputs) == (use_audio or guided)
        with torch.no_grad():
            changed = (model(batch) - model(other)).abs().max()
        assert (changed > 1e-5) == (use_audio or guided), (use_audio, guided, changed)


def test_missing_audio_uses_learned_vector():
    torch.manual_seed(0)
    block = AGSSMBlock(8, d_audio=5, d_state=4).eval()
    x, audio = torch.randn(1, 6, 8), torch.randn(1, 6, 5)
    none_valid = torch.zeros(1, 6, dtype=torch.bool)
    with torch.no_grad():
        a = block(x, audio, none_valid)
        b = block(x, torch.randn(1, 6, 5) * 10, none_valid)
    torch.testing.assert_close(a, b)


def test_agssm_scan_impls_agree():
    torch.manual_seed(0)
    block = AGSSMBlock(8, d_audio=5, d_state=4, scan_impl="ref").double()
    x, audio = (
        torch.randn(2, 11, 8, dtype=torch.float64),
        torch.randn(2, 11, 5, dtype=torch.float64),
    )
    ref = block(x, audio)
    block.scan_impl = "torch"
    torch.testing.assert_close(block(x, audio), ref)


def test_unknown_model_names_the_known_ones():
    with pytest.raises(KeyError, match="hga_agssm"):
        build_model({"name": "nope"}, DIMS)
