import numpy as np
import pandas as pd
import pytest

from train.folds import assign_folds, combine


def test_folds_group_left_and_right_and_balance():
    rows = []
    for v in range(13):
        for side in ["left", "right"] if v % 3 == 0 else ["none"]:
            tid = f"v{v}_{side}" if side != "none" else f"v{v}"
            rows.append({"track_id": tid, "video_id": f"v{v}", "n_annotated": 100 + 10 * v})
    df = pd.DataFrame(rows)
    folds = assign_folds(df, 4, seed=1)
    assert set(folds) == set(df["track_id"]) and set(folds.values()) == {0, 1, 2, 3}
    for v in range(0, 13, 3):
        assert folds[f"v{v}_left"] == folds[f"v{v}_right"]
    load = np.zeros(4)
    for tid, n in zip(df["track_id"], df["n_annotated"]):
        load[folds[tid]] += n
    assert load.max() / load.min() < 1.5
    assert assign_folds(df, 4, seed=1) == folds
    with pytest.raises(ValueError):
        assign_folds(df.iloc[:2], 4)


def test_video_id_falls_back_to_track_suffix():
    df = pd.DataFrame({"track_id": ["a_left", "a_right", "b", "c"]})
    folds = assign_folds(df, 2)
    assert folds["a_left"] == folds["a_right"]


def test_combine_vote_and_mean():
    p = [np.array([[0.9, 0.1]]), np.array([[0.6, 0.2]]), np.array([[0.2, 0.45]])]
    thr = [np.array([0.5, 0.5]), np.array([0.5, 0.5]), np.array([0.5, 0.4])]
    mean_p, vote = combine(p, thr, "vote")
    assert vote.tolist() == [[1, 0]]
    np.testing.assert_allclose(mean_p, [[17 / 30, 0.25]])
    _, mean = combine(p, thr, "mean")
    assert mean.tolist() == [[1, 0]]
    _, even = combine([np.array([[0.9]]), np.array([[0.45]])], [np.array([0.5])] * 2, "vote")
    assert even.tolist() == [[1]]  # tie: mean margin (0.4 - 0.05) / 2 > 0
    with pytest.raises(ValueError):
        combine(p, thr, "max")
