"""Losses: masking of -1 labels and padded frames, and their reductions to BCE."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from train.losses import LOSS_REGISTRY, build_loss


def _data(seed=0, b=2, t=5):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, t, 12, generator=g, dtype=torch.float64) * 2
    labels = torch.randint(0, 2, (b, t, 12), generator=g)
    labels[torch.rand(b, t, 12, generator=g) < 0.3] = -1
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[1, -2:] = False
    return logits, labels, mask


def _bce_on_valid(logits, labels, mask, pos_weight=None):
    valid = (labels >= 0) & mask[..., None]
    return F.binary_cross_entropy_with_logits(
        logits[valid],
        labels[valid].to(logits.dtype),
        pos_weight=None if pos_weight is None else pos_weight.expand_as(logits)[valid],
    )


@pytest.mark.parametrize("spec", [{"name": "bce"}, {"name": "asl"}, {"name": "focal"}])
def test_ignored_entries_do_not_matter(spec):
    logits, labels, mask = _data()
    loss_fn = build_loss(spec)
    base = loss_fn(logits, labels, mask)
    changed = logits.clone()
    changed[labels < 0] = 50.0  # unknown labels
    changed[~mask] = -50.0  # padded frames
    torch.testing.assert_close(loss_fn(changed, labels, mask), base)
    logits.requires_grad_()
    loss_fn(logits, labels, mask).backward()
    assert (logits.grad[labels < 0] == 0).all() and (logits.grad[~mask] == 0).all()


def test_bce_matches_torch_with_pos_weight():
    logits, labels, mask = _data(1)
    pw = torch.linspace(0.5, 3.0, 12, dtype=torch.float64)
    got = build_loss({"name": "bce", "pos_weight": pw.tolist()})(logits, labels, mask)
    torch.testing.assert_close(got, _bce_on_valid(logits, labels, mask, pw).float())
    got = build_loss("bce")(logits, labels, mask)
    torch.testing.assert_close(got, _bce_on_valid(logits, labels, mask).float())


def test_asl_at_zero_gammas_and_clip_is_bce():
    logits, labels, mask = _data(2)
    asl = build_loss({"name": "asl", "gamma_pos": 0, "gamma_neg": 0, "clip": 0})
    torch.testing.assert_close(asl(logits, labels, mask), build_loss("bce")(logits, labels, mask))


def test_asl_discounts_easy_negatives():
    labels = torch.zeros(1, 1, 12)
    easy = torch.full((1, 1, 12), -3.0)  # p ~ 0.047 < clip: discarded
    hard = torch.full((1, 1, 12), 2.0)
    asl = build_loss({"name": "asl", "gamma_neg": 4, "gamma_pos": 0, "clip": 0.05})
    assert asl(easy, labels) == 0
    assert asl(hard, labels) > 0
    assert asl(hard, labels) < build_loss("bce")(hard, labels)


def test_focal_at_gamma_zero_is_bce():
    logits, labels, mask = _data(3)
    focal = build_loss({"name": "focal", "gamma": 0})
    torch.testing.assert_close(focal(logits, labels, mask), build_loss("bce")(logits, labels, mask))
    balanced = build_loss({"name": "focal", "gamma": 0, "alpha": 0.5})(logits, labels, mask)
    torch.testing.assert_close(balanced, 0.5 * focal(logits, labels, mask))


@pytest.mark.parametrize("name", sorted(LOSS_REGISTRY))
def test_all_unknown_is_zero_with_gradient(name):
    logits = torch.randn(1, 3, 12, requires_grad=True)
    loss = build_loss(name)(logits, torch.full((1, 3, 12), -1), None)
    assert loss.item() == 0
    loss.backward()


def test_bad_specs_explain_themselves():
    with pytest.raises(KeyError, match="asl"):
        build_loss({"name": "hinge"})
    with pytest.raises(ValueError, match="auto"):
        build_loss({"name": "bce", "pos_weight": "auto"})
