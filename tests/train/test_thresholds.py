import numpy as np
import pytest

from train.metrics import binarize, f1_per_au
from train.thresholds import best_threshold, f1_curve, tune_thresholds


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tuned_threshold_beats_every_grid_threshold(seed):
    rng = np.random.default_rng(seed)
    labels = (rng.random((400, 12)) < np.linspace(0.05, 0.8, 12)).astype(np.int8)
    probs = np.clip(0.3 * labels + 0.7 * rng.random((400, 12)), 0, 1)
    labels[:20] = -1
    thr = tune_thresholds(probs, labels)
    tuned = f1_per_au(binarize(probs, thr), labels)
    _, curve = f1_curve(probs, labels, np.linspace(0, 1, 201))
    assert np.all(tuned >= curve.max(0) - 1e-12)
    assert np.all(tuned >= f1_per_au(binarize(probs, 0.5), labels))


def test_best_threshold_separable_and_degenerate():
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8])
    target = np.array([0, 0, 0, 1, 1], bool)
    thr, f1 = best_threshold(scores, target)
    assert 0.3 < thr <= 0.7 and f1 == 1.0
    assert best_threshold(scores, np.zeros(5, bool)) == (0.5, 0.0)
    thr, f1 = best_threshold(np.array([0.4, 0.4, 0.4]), np.array([1, 0, 1], bool))
    assert thr == 0.4 and f1 == pytest.approx(0.8)
