import numpy as np
import pytest

from train.metrics import binarize, f1_per_au
from train.thresholds import (
    best_threshold,
    cross_fitted,
    f1_curve,
    track_halves,
    tune_thresholds,
)


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


def test_track_halves_alternate_over_sorted_ids():
    halves = track_halves(["vid2_left", "vid0_right", "vid1", "vid0_left"])
    assert halves == {"vid0_left": 0, "vid0_right": 1, "vid1": 0, "vid2_left": 1}
    assert track_halves(list(reversed(list(halves)))) == halves


def test_cross_fitted_thresholds_never_see_the_frames_they_decide():
    rng = np.random.default_rng(3)
    n, a = 400, 4
    labels = (rng.random((n, a)) < 0.3).astype(np.int8)
    labels[:20, 0] = -1
    probs = np.clip(0.35 * labels + 0.65 * rng.random((n, a)), 0, 1)
    half = (np.arange(n) // 50) % 2  # blocks of frames, as tracks are
    binary, thr = cross_fitted(probs, labels, half)
    # plain reference: per half and AU, the threshold tuned on the other half's labelled frames
    for h in (0, 1):
        for j in range(a):
            other = [i for i in range(n) if half[i] != h and labels[i, j] >= 0]
            t, _ = best_threshold(probs[other, j], labels[other, j] == 1)
            assert thr[h, j] == t
            for i in range(n):
                if half[i] == h:
                    assert binary[i, j] == int(probs[i, j] >= t)
    # the decisions of half 0 do not move when half 0's own labels change
    flipped = labels.copy()
    flipped[half == 0] = 1 - np.maximum(flipped[half == 0], 0)
    again, thr2 = cross_fitted(probs, flipped, half)
    assert np.array_equal(thr2[0], thr[0]) and np.array_equal(again[half == 0], binary[half == 0])
