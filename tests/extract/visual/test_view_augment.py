"""Augmented local views: seeded draws, the batched warp against a plain per-view reference,
and ConvNeXt's (T, K, D) local views through the job's per-frame inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from extract.encoders import load_visual_encoder
from extract.encoders.view_augment import (
    ViewAugment,
    view_matrices,
    warp_views,
    warp_views_reference,
)


def test_draws_are_seeded_per_track_and_frame():
    aug = ViewAugment(views=4, seed=3)
    a = aug.params("vid_1", 10)
    assert a.shape == (4, 5)
    np.testing.assert_array_equal(a, ViewAugment(views=4, seed=3).params("vid_1", 10))
    assert not np.allclose(a, aug.params("vid_1", 11))  # another frame
    assert not np.allclose(a, aug.params("vid_2", 10))  # another track
    assert not np.allclose(a, ViewAugment(views=4, seed=4).params("vid_1", 10))  # another seed
    many = np.concatenate([aug.params("t", f) for f in range(200)])  # (800, 5)
    area, cx, cy, flip, angle = many.T
    assert area.min() >= 0.6 and area.max() <= 0.9
    half = np.sqrt(area) / 2
    assert (cx - half >= 0).all() and (cx + half <= 1).all() and (cy - half >= 0).all()
    assert 0.4 < flip.mean() < 0.6 and set(np.unique(flip)) == {0.0, 1.0}
    assert np.abs(angle).max() <= 10.0 and angle.min() < -8 and angle.max() > 8


def test_matrix_convention_flip_and_identity():
    s = 9
    img = np.random.default_rng(0).normal(size=(3, s, s))
    ident = view_matrices(np.array([[1.0, 0.5, 0.5, 0.0, 0.0]]), s)
    np.testing.assert_allclose(warp_views_reference(img, ident)[0], img, atol=1e-12)
    flip = view_matrices(np.array([[1.0, 0.5, 0.5, 1.0, 0.0]]), s)
    np.testing.assert_allclose(warp_views_reference(img, flip)[0], img[:, :, ::-1], atol=1e-12)
    # a 90 degree turn maps output (x, y) to source (c - (y - c), c + (x - c))
    turn = view_matrices(np.array([[1.0, 0.5, 0.5, 0.0, 90.0]]), s)
    expected = np.stack([np.array([[img[ch, x, s - 1 - y] for x in range(s)] for y in range(s)])
                         for ch in range(3)])  # fmt: skip
    np.testing.assert_allclose(warp_views_reference(img, turn)[0], expected, atol=1e-9)


def test_batched_warp_equals_per_view_reference():
    rng = np.random.default_rng(1)
    b, s = 3, 16
    images = rng.normal(size=(b, 3, s, s)).astype(np.float32)
    aug = ViewAugment(views=5, seed=7)
    mats = aug.matrices(["a", "a", "b"], [0, 1, 0], s)  # (3, 5, 2, 3)
    fast = warp_views(torch.from_numpy(images), mats).numpy()  # (3, 5, 3, S, S)
    assert fast.shape == (b, 5, 3, s, s)
    for i in range(b):
        ref = warp_views_reference(images[i].astype(np.float64), mats[i])
        np.testing.assert_allclose(fast[i], ref, atol=2e-5)
    assert not np.allclose(fast[0], fast[1])  # two frames, two draws


def test_convnext_views_deterministic_per_frame(tiny_models):
    enc = load_visual_encoder("convnext", tiny_models["convnext"], views=3, view_seed=5)
    crops = np.repeat(
        np.random.default_rng(2).integers(0, 255, (1, 64, 64, 3), dtype=np.uint8), 4, axis=0
    )
    tracks = np.array(["v"] * 4, dtype=object)
    out = enc.encode(crops, track_id=tracks, frame_index=np.arange(4))
    assert out["local"].shape == (4, 3, 32) and out["cls"].shape == (4, 32)
    # the same image on four frames: the same global feature, different local views
    np.testing.assert_allclose(out["cls"], np.repeat(out["cls"][:1], 4, 0), rtol=1e-5, atol=1e-6)
    assert not np.allclose(out["local"][0], out["local"][1], atol=1e-4)
    # rerun, and frames split over two calls (shards, batches, OOM halves): identical views
    again = enc.encode(crops, track_id=tracks, frame_index=np.arange(4))
    np.testing.assert_array_equal(out["local"], again["local"])
    enc.batch_size = 1
    tail = enc.encode(crops[2:], track_id=tracks[2:], frame_index=np.arange(2, 4))
    np.testing.assert_allclose(out["local"][2:], tail["local"], rtol=1e-5, atol=1e-6)
    # the views are the model's pooled features of the warped crops, one view at a time
    pixels = enc.preprocess(crops[:1])  # (1, 3, S, S)
    mats = enc.augment.matrices(["v"], [0], enc.crop_size)[0]  # (3, 2, 3)
    ref = warp_views_reference(pixels[0].double().numpy(), mats)  # (3, 3, S, S)
    with torch.inference_mode():
        pooled = enc._pooled(torch.from_numpy(ref).float()).numpy()  # (3, D)
    np.testing.assert_allclose(out["local"][0], pooled, rtol=1e-3, atol=2e-3)
    fields = enc.fingerprint_fields()
    assert fields["local"] == "views" and fields["views"]["views"] == 3
    assert fields["views"]["seed"] == 5 and fields["views"]["area"] == [0.6, 0.9]


def test_view_settings_checked():
    with pytest.raises(ValueError, match="local views"):
        ViewAugment(views=0)
    with pytest.raises(ValueError, match="area"):
        ViewAugment(area=(0.9, 0.5))
