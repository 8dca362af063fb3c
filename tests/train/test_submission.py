import numpy as np
import pandas as pd
import pytest

from data_manifest.aus import AUS
from data_manifest.user_error import UserError
from train.inference import fill_faceless
from train.submission import (
    HEADER,
    predictions_frame,
    read_example,
    submission_lines,
    write_submission,
)


def _binary():
    rng = np.random.default_rng(0)
    return {"b_left": rng.integers(0, 2, (4, 12)), "a": rng.integers(0, 2, (3, 12))}


def test_predictions_txt_matches_example_row_by_row(tmp_path):
    binary = _binary()
    example_rows = [
        ("a", 1),
        ("a", 2),
        ("a", 3),
        ("b_left", 1),
        ("b_left", 2),
        ("b_left", 3),
        ("b_left", 4),
    ]
    example = tmp_path / "example.txt"
    example.write_text(
        HEADER
        + "\n"
        + "".join(f"{t}/{f:05d}.jpg,0,0,0,0,0,0,0,0,0,0,0,0\n" for t, f in example_rows)
    )
    out = tmp_path / "predictions.txt"
    n = write_submission(out, binary, example=read_example(example))
    ours = out.read_text().splitlines()
    ref = example.read_text().splitlines()
    assert n == 7 and len(ours) == len(ref) and ours[0] == HEADER
    for got, want, (t, f) in zip(ours[1:], ref[1:], example_rows):
        assert got.split(",")[0] == want.split(",")[0]
        assert got.split(",")[1:] == [str(int(v)) for v in binary[t][f - 1]]


def test_every_frame_in_test_list_order():
    binary = _binary()
    lines = submission_lines(binary, order=["b_left", "a"])
    assert lines[0] == "image_location," + ",".join(AUS)
    assert [ln.split(",")[0] for ln in lines[1:]] == [
        f"b_left/{i:05d}.jpg" for i in range(1, 5)
    ] + [f"a/{i:05d}.jpg" for i in range(1, 4)]


def test_example_errors_and_beyond_last_frame(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("image_location,AU1\n")
    with pytest.raises(UserError, match="header"):
        read_example(bad)
    with pytest.raises(UserError, match="without predictions"):
        submission_lines(_binary(), example=[("zzz", 1)])
    lines = submission_lines(_binary(), example=[("a", 9)])
    assert lines[1].split(",")[1:] == [str(v) for v in _binary()["a"][-1]]


def test_parquet_frame_columns():
    binary = _binary()
    probs = {k: v.astype(np.float32) for k, v in binary.items()}
    df = predictions_frame(["a", "b_left"], probs, binary)
    assert list(df.columns[:3]) == ["track", "frame", "prob_AU1"] and len(df) == 7
    assert df["frame"].tolist()[:3] == [1, 2, 3]
    assert isinstance(df, pd.DataFrame) and df["AU26"].dtype == np.int8


def test_fill_faceless_nearest_earlier_on_ties():
    values = np.arange(7, dtype=float)[:, None]
    valid = np.array([False, True, False, False, True, False, False])
    got = fill_faceless(values, valid)[:, 0]
    # frame 0 -> 1; 2 -> 1; 3 -> 4; 5, 6 -> 4; frame 2 is 1 from frame 1 and 2 from frame 4
    assert got.tolist() == [1, 1, 1, 4, 4, 4, 4]
    tie = fill_faceless(values[:3], np.array([True, False, True]))[:, 0]
    assert tie.tolist() == [0, 0, 2]
    none = np.zeros(3, bool)
    assert fill_faceless(values[:3], none).tolist() == values[:3].tolist()
