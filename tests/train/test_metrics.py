import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from tests.train.masked_bce import build_test_loss
from train.metrics import (
    ap_binary,
    auc_binary,
    binarize,
    defined_aus,
    f1_per_au,
    mean_f1,
    score,
)


def _random(seed: int, n: int = 500, a: int = 12):
    rng = np.random.default_rng(seed)
    labels = rng.integers(-1, 2, size=(n, a)).astype(np.int8)
    probs = rng.random((n, a))
    probs[:, 0] = np.round(probs[:, 0], 1)  # ties
    return probs, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_f1_matches_sklearn_with_minus_one_excluded(seed):
    probs, labels = _random(seed)
    preds = binarize(probs, 0.5)
    ours = f1_per_au(preds, labels)
    for a in range(labels.shape[1]):
        known = labels[:, a] >= 0
        ref = f1_score(labels[known, a], preds[known, a], zero_division=0)
        assert ours[a] == pytest.approx(ref, abs=1e-12)
    assert mean_f1(preds, labels) == pytest.approx(ours.mean())


def test_f1_ignores_minus_one_frames_whatever_is_predicted():
    probs, labels = _random(3)
    preds = binarize(probs, 0.5)
    flipped = preds.copy()
    flipped[labels < 0] = 1 - flipped[labels < 0]
    np.testing.assert_array_equal(f1_per_au(preds, labels), f1_per_au(flipped, labels))


def test_f1_zero_when_no_positive_anywhere():
    labels = np.zeros((10, 12), np.int8)
    assert f1_per_au(np.zeros((10, 12)), labels).tolist() == [0.0] * 12


def test_au_without_defined_labels_is_excluded_from_the_mean_and_named():
    probs, labels = _random(5)
    labels[:, 3] = -1  # AU6 never coded in this set
    labels[:, 7] = -1  # AU15 neither
    preds = binarize(probs, 0.5)
    f1 = f1_per_au(preds, labels)
    keep = [a for a in range(12) if a not in (3, 7)]
    assert defined_aus(labels).tolist() == [a in keep for a in range(12)]
    assert mean_f1(preds, labels) == pytest.approx(f1[keep].mean())
    assert mean_f1(preds, labels) > f1.mean()  # the two zeros no longer drag it down
    m = score(probs, labels, 0.5)
    assert m["excluded_aus"] == ["AU6", "AU15"]
    assert m["mean_f1"] == pytest.approx(f1[keep].mean())
    assert m["per_au_f1"]["AU6"] == 0.0  # kept as a column, named as excluded


def test_au_with_labels_but_no_positive_stays_in_the_mean():
    probs, labels = _random(6)
    labels[:, 2] = np.where(labels[:, 2] == 1, 0, labels[:, 2])  # defined, never positive
    preds = binarize(probs, 0.5)
    assert mean_f1(preds, labels) == pytest.approx(f1_per_au(preds, labels).mean())
    assert score(probs, labels)["excluded_aus"] == []


def test_no_defined_label_at_all_scores_zero_and_names_every_au():
    labels = np.full((5, 12), -1, np.int8)
    m = score(np.random.default_rng(0).random((5, 12)), labels)
    assert m["mean_f1"] == 0.0 and len(m["excluded_aus"]) == 12


@pytest.mark.parametrize("seed", [0, 1])
def test_auc_and_ap_match_sklearn(seed):
    probs, labels = _random(seed)
    for a in range(labels.shape[1]):
        known = labels[:, a] >= 0
        y, s = labels[known, a], probs[known, a]
        assert auc_binary(s, y == 1) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert ap_binary(s, y == 1) == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_score_keys_and_single_class_is_nan_free_json():
    probs, labels = _random(4)
    labels[:, 5] = 0
    m = score(probs, labels, np.full(12, 0.5))
    assert set(m) >= {"mean_f1", "per_au_f1", "auc", "ap", "positive_rate"}
    assert m["auc"]["AU10"] is None and m["ap"]["AU10"] is None


def test_loss_ignores_minus_one_and_masked_frames():
    torch.manual_seed(0)
    logits = torch.randn(2, 8, 12)
    labels = torch.randint(-1, 2, (2, 8, 12)).float()
    mask = torch.rand(2, 8) > 0.3
    loss_fns = [build_test_loss({"name": "bce"})]
    try:
        from train.losses import build_loss
    except ImportError:
        pass
    else:
        loss_fns += [build_loss({"name": "bce"}), build_loss({"name": "asl"})]
    for loss_fn in loss_fns:
        base = loss_fn(logits, labels, mask)
        changed = logits.clone()
        changed[labels < 0] += 5.0
        changed[~mask] -= 7.0
        assert torch.allclose(loss_fn(changed, labels, mask), base)
