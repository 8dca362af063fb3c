"""ABAW8 fusion pieces: windowed attention against its reference, the weights that sum to one,
cross-modal reach, the adaptive window choice, local and audio views, and the system around
them."""

from __future__ import annotations

import logging

import pytest
import torch

from train.models import build_model
from train.models.audio_views import AudioLocalViews
from train.models.fusion import ModalityGate, MultiScaleFusion, ScaleModalityBlock
from train.models.local_views import LocalViews
from train.models.window_attention import windowed_attention, windowed_attention_ref
from train.models.window_select import WindowSelect


@pytest.mark.parametrize("streams", [1, 2])
@pytest.mark.parametrize("window", [1, 4, 5, 40])
@pytest.mark.parametrize("padded", [False, True])
def test_windowed_attention_matches_reference(streams, window, padded):
    g = torch.Generator().manual_seed(window + streams)
    b, h, t, dh = 2, 3, 11, 4
    q = torch.randn(b, h, t, dh, generator=g, dtype=torch.float64)
    k = torch.randn(b, h, streams, t, dh, generator=g, dtype=torch.float64)
    v = torch.randn(b, h, streams, t, dh, generator=g, dtype=torch.float64)
    mask = None
    if padded:
        mask = torch.ones(b, t, dtype=torch.bool)
        mask[1, 7:] = False
    out = windowed_attention(q, k, v, window, mask)
    torch.testing.assert_close(out, windowed_attention_ref(q, k, v, window, mask))


def _randomise(module: torch.nn.Module, seed: int = 0) -> None:
    """Move the zero-initialised last layers of the gates off their start, so the weights
    depend on the input."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (ModalityGate, WindowSelect)):
                last = m.net[-1]
                last.weight.copy_(torch.randn(last.weight.shape, generator=g))


def test_modality_weights_sum_to_one_per_frame_and_scale_and_depend_on_context():
    torch.manual_seed(0)
    fusion = MultiScaleFusion({"visual": 6, "local": 5, "audio": 4}, 8, (2, 4, 8), 2, 0.0)
    _randomise(fusion)
    feats = {m: torch.randn(3, 10, d) for m, d in {"visual": 6, "local": 5, "audio": 4}.items()}
    mask = torch.ones(3, 10, dtype=torch.bool)
    mask[2, 6:] = False
    _, mod_w, scale_w = fusion.weights(feats, mask)
    assert mod_w.shape == (3, 10, 3, 3)  # (B, T, S, M)
    assert scale_w.shape == (3, 3)  # (B, S)
    torch.testing.assert_close(mod_w.sum(-1), torch.ones(3, 10, 3))  # over modalities
    torch.testing.assert_close(scale_w.sum(-1), torch.ones(3))  # over scales
    assert (mod_w >= 0).all() and (scale_w >= 0).all()
    # context-dependent: frames and windows get different weights
    assert (mod_w[:, 1:] - mod_w[:, :1]).abs().max() > 1e-3
    assert (scale_w[1:] - scale_w[:1]).abs().max() > 1e-3


def test_gates_start_equal():
    fusion = MultiScaleFusion({"visual": 6, "audio": 4}, 8, (2, 4), 2, 0.0)
    feats = {"visual": torch.randn(2, 5, 6), "audio": torch.randn(2, 5, 4)}
    _, mod_w, scale_w = fusion.weights(feats)
    torch.testing.assert_close(mod_w, torch.full_like(mod_w, 0.5))
    torch.testing.assert_close(scale_w, torch.full_like(scale_w, 0.5))


@pytest.mark.parametrize("cross", [True, False])
def test_visual_frames_attend_to_audio_within_the_window(cross):
    torch.manual_seed(0)
    block = ScaleModalityBlock(8, 2, window=4, dropout=0.0, cross=cross).eval()
    visual, audio = torch.randn(1, 12, 8), torch.randn(1, 1, 12, 8)
    other = audio.clone()
    other[:, :, 6] = torch.randn(8) * 5  # change the audio of frame 6
    with torch.no_grad():
        diff = (block(visual, audio, None) - block(visual, other, None)).abs().amax(-1)[0]
    if cross:
        assert (diff[4:9] > 1e-6).all()  # frames within 4 // 2 of frame 6 hear it
        assert (diff[:4] == 0).all() and (diff[9:] == 0).all()  # the others do not
    else:
        assert (diff == 0).all()


def test_hard_window_select_is_one_hot_forward_and_learns_through_softmax():
    torch.manual_seed(0)
    select = WindowSelect(6, 3, hidden=8, mode="hard")
    _randomise(select)
    x = torch.randn(4, 9, 6, requires_grad=True)
    w = select(x)
    assert ((w == 0) | (w == 1)).all() and (w.sum(-1) == 1).all()
    (w * torch.randn(4, 3)).sum().backward()
    assert select.net[-1].weight.grad.abs().sum() > 0
    soft = WindowSelect(6, 3, hidden=8, mode="soft")
    soft.load_state_dict(select.state_dict())
    assert torch.equal(w.argmax(-1), soft(x).argmax(-1))


def test_window_select_ignores_padding():
    torch.manual_seed(0)
    select = WindowSelect(6, 3, hidden=8)
    _randomise(select)
    x = torch.randn(2, 9, 6)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[:, 5:] = False
    garbage = x.clone()
    garbage[:, 5:] = 100.0
    torch.testing.assert_close(select(x, mask), select(garbage, mask))
    torch.testing.assert_close(select(x, mask), select(x[:, :5]))


def test_local_views_random_subset_in_training_mean_at_eval():
    views = torch.randn(5, 4, 3, 2)  # (B, T, V, D)
    lv = LocalViews(n_train=2)
    lv.eval()
    torch.testing.assert_close(lv(views), views.mean(2))
    lv.train()
    pick = lv.choose(5, 3, torch.Generator().manual_seed(0))
    assert ((pick > 0).sum(1) == 2).all()
    torch.testing.assert_close(pick.sum(1), torch.ones(5))
    a = lv(views, torch.Generator().manual_seed(3))
    b = lv(views, torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)
    # every window is the mean of two of its views, the same two for all its frames
    for i in range(5):
        pairs = [views[i, :, [p, q]].mean(1) for p in range(3) for q in range(p + 1, 3)]
        assert any(torch.allclose(a[i], pair) for pair in pairs)
    draws = {
        tuple(lv.choose(1, 3, torch.Generator().manual_seed(s))[0].tolist()) for s in range(20)
    }
    assert len(draws) == 3  # all pairs get drawn
    assert torch.allclose(LocalViews(5).train()(views), views.mean(2))  # more than V: all


def test_audio_views_deterministic_under_a_seed_and_identity_at_eval():
    aug = AudioLocalViews(crop_min=0.5, freq_masks=2, freq_width=0.25)
    audio = torch.randn(6, 20, 16)
    valid = torch.rand(6, 20) > 0.1
    aug.eval()
    a, v = aug(audio, valid)
    assert a is audio and v is valid
    aug.train()
    a1, v1 = aug(audio, valid, torch.Generator().manual_seed(7))
    a2, v2 = aug(audio, valid, torch.Generator().manual_seed(7))
    a3, v3 = aug(audio, valid, torch.Generator().manual_seed(8))
    assert torch.equal(a1, a2) and torch.equal(v1, v2)
    assert not (torch.equal(a1, a3) and torch.equal(v1, v3))
    keep_time, keep_freq = aug.draw(6, 20, 16, torch.Generator().manual_seed(7))
    assert torch.equal(v1, valid & keep_time)
    torch.testing.assert_close(a1, audio * keep_freq[:, None, :])
    for row in keep_time:  # one contiguous span of at least half the window
        kept = row.nonzero().flatten()
        assert len(kept) >= 10 and kept[-1] - kept[0] + 1 == len(kept)
    assert ((~keep_freq).sum(1) <= 2 * 4).all()  # two bands of at most 0.25 * 16 channels
    mask = torch.ones(6, 20, dtype=torch.bool)
    mask[:, 8:] = False  # windows at a track's end: 8 real frames
    keep_time, _ = aug.draw(6, 20, 16, torch.Generator().manual_seed(1), mask.sum(1))
    assert not keep_time[:, 8:].any() and (keep_time.sum(1) >= 4).all()
    off = AudioLocalViews().train()
    assert not off.active and off(audio, valid)[0] is audio


def _dims(local: bool) -> dict:
    dims = {"cls": 8, "audio": 6, "n_aus": 12}
    return {**dims, "local": 5} if local else dims


def test_fusion_tcn_says_when_the_store_has_no_local_views(caplog):
    kw = {"name": "fusion_tcn", "d_model": 8, "heads": 2, "windows": (2,), "tcn_channels": (8,)}
    with caplog.at_level(logging.WARNING, logger="train.models.systems"):
        model = build_model(kw, _dims(local=False))
    assert "no local views" in caplog.text and "data.features.local" in caplog.text
    assert model.required_inputs == {"cls", "audio"}
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="train.models.systems"):
        model = build_model(kw, _dims(local=True))
    assert caplog.text == ""
    assert model.required_inputs == {"cls", "audio", "local"}


def _batch(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "cls": torch.randn(2, 10, 8, generator=g),
        "local": torch.randn(2, 10, 4, 5, generator=g),
        "audio": torch.randn(2, 10, 6, generator=g),
        "audio_valid": torch.ones(2, 10, dtype=torch.bool),
        "face_valid": torch.ones(2, 10, dtype=torch.bool),
        "mask": torch.ones(2, 10, dtype=torch.bool),
    }


def test_fusion_tcn_views_eval_mean_and_seeded_training():
    torch.manual_seed(0)
    spec = {"name": "fusion_tcn", "d_model": 8, "heads": 2, "windows": (2, 4)}
    model = build_model({**spec, "tcn_channels": (8,), "dropout": 0.0}, _dims(local=True))
    batch = _batch()
    shuffled = {**batch, "local": batch["local"][:, :, [2, 0, 3, 1]]}
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(batch), model(shuffled))  # eval: mean over views
    model.train()
    outs = []
    for seed in (1, 1, 2):
        model.generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            outs.append(model(batch))
    torch.testing.assert_close(outs[0], outs[1])
    assert (outs[0] - outs[2]).abs().max() > 1e-6
    # the local views are read: changing them changes the output
    other = {**batch, "local": torch.randn_like(batch["local"])}
    model.eval()
    with torch.no_grad():
        assert (model(batch) - model(other)).abs().max() > 1e-6


def test_fusion_tcn_training_views_ignore_padding():
    """In training, with the same seed, a window padded at its end gives its real frames the
    same outputs as the window cut to them: the view draws depend on the real frames only."""
    torch.manual_seed(0)
    spec = {"name": "fusion_tcn", "d_model": 8, "heads": 2, "windows": (2, 4), "local_views": 2}
    model = build_model({**spec, "tcn_channels": (8,), "dropout": 0.0}, _dims(local=True))
    model.train()
    batch = _batch(3)
    short = {k: v[:, :6] for k, v in batch.items()}
    padded = {k: v.clone() for k, v in batch.items()}
    padded["mask"][:, 6:] = False
    for k in ("cls", "local", "audio"):
        padded[k][:, 6:] = torch.randn_like(padded[k][:, 6:]) * 100
    outs = []
    for b in (short, padded):
        model.generator = torch.Generator().manual_seed(5)
        with torch.no_grad():
            outs.append(model(b)[:, :6])
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-4, atol=1e-4)


def test_fusion_equal_gate_weighs_every_modality_the_same():
    torch.manual_seed(0)
    fusion = MultiScaleFusion({"a": 4, "b": 6, "c": 5}, d_model=8, windows=(1,), gate="equal")
    for p in fusion.modality_gate.parameters():  # a trained gate would not be equal
        torch.nn.init.normal_(p)
    feats = {"a": torch.randn(2, 7, 4), "b": torch.randn(2, 7, 6), "c": torch.randn(2, 7, 5)}
    _, mod_w, _ = fusion.weights(feats)
    torch.testing.assert_close(mod_w, torch.full((2, 7, 1, 3), 1 / 3))
    with pytest.raises(ValueError, match="gate"):
        MultiScaleFusion({"a": 4}, d_model=8, gate="fixed")


def test_fusion_tcn_frame_rows_see_each_frame_alone():
    """fusion="frame", tcn_blocks=0: a frame's output equals that frame run as a window of its
    own (the plain per-frame reference); the full system mixes frames."""
    torch.manual_seed(0)
    spec = {"name": "fusion_tcn", "d_model": 8, "heads": 2, "tcn_channels": (8, 8), "dropout": 0.0}
    frame = build_model({**spec, "fusion": "frame", "tcn_blocks": 0}, _dims(local=True)).eval()
    full = build_model({**spec, "windows": (2, 4)}, _dims(local=True)).eval()
    assert frame.fusion.windows == (1,) and not frame.fusion.cross and len(frame.tcn.blocks) == 0
    assert frame.fusion.gate == "equal" and full.fusion.gate == "context"
    assert len(full.tcn.blocks) == 2
    batch = _batch(4)
    with torch.no_grad():
        out = frame(batch)  # (B, T, n_aus)
        for t in range(10):
            alone = frame({k: v[:, t : t + 1] for k, v in batch.items()})
            torch.testing.assert_close(out[:, t : t + 1], alone, rtol=1e-5, atol=1e-5)
        other = {k: v.clone() for k, v in batch.items()}
        other["cls"][:, 0] = 5.0 * torch.randn(2, 8)
        assert (frame(other)[:, 1:] - out[:, 1:]).abs().max() < 1e-6
        assert (full(other)[:, 1:] - full(batch)[:, 1:]).abs().max() > 1e-4


def test_fusion_tcn_tcn_blocks_checked_and_default_unchanged():
    spec = {"name": "fusion_tcn", "d_model": 8, "heads": 2}
    assert len(build_model(spec, _dims(local=True)).tcn.blocks) == 3  # abaw8 default
    assert len(build_model({**spec, "tcn_blocks": 1}, _dims(local=True)).tcn.blocks) == 1
    with pytest.raises(ValueError, match="tcn_blocks"):
        build_model({**spec, "tcn_blocks": 4}, _dims(local=True))
    with pytest.raises(ValueError, match="fusion"):
        build_model({**spec, "fusion": "single"}, _dims(local=True))


def test_fusion_tcn_abaw8_ablation_rows_add_one_part_each():
    from train.recipes import ABLATIONS, RECIPES, resolve

    rows = dict(ABLATIONS["abaw8"])
    assert list(rows) == ["global", "+local", "+multi-scale", "+TCN"]
    assert rows["+TCN"] == RECIPES["abaw8"]
    models = {name: resolve(None, [], recipe=spec).model for name, spec in rows.items()}
    assert models["global"].local is None and models["global"].fusion == "frame"
    assert models["+local"].local == "views" and models["+local"].fusion == "frame"
    assert models["+multi-scale"].tcn_blocks == 0 and models["+multi-scale"].fusion == "multiscale"
    assert models["+TCN"].tcn_blocks is None and models["+TCN"].fusion == "multiscale"
    assert all(m.name == "fusion_tcn" and m.hidden == 512 for m in models.values())
    for name, spec in rows.items():  # every row reads the same arrays and builds
        assert spec["data"]["features"] == RECIPES["abaw8"]["data"]["features"]
        build_model({**models[name].to_dict(), "d_model": 8, "heads": 2}, _dims(local=True))
