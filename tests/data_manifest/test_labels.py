from __future__ import annotations

import numpy as np
import pytest

from data_manifest.annotations import AnnotationError
from data_manifest.labels import load_labels

from .conftest import make_labels


def test_equal_length(tmp_path):
    ann = make_labels(tmp_path / "t.txt", 20)
    res = load_labels(tmp_path / "t.txt", 20)
    assert res.note == "" and res.n_lines == 20
    assert res.labels.dtype == np.int8 and res.labels.shape == (20, 12)
    np.testing.assert_array_equal(res.labels, ann)


def test_longer_annotation_drops_extra_lines_never_shifts(tmp_path):
    ann = make_labels(tmp_path / "t.txt", 22, unknown=2)
    res = load_labels(tmp_path / "t.txt", 20)
    assert res.labels.shape == (20, 12)
    np.testing.assert_array_equal(res.labels, ann[:20])  # aligned from frame 1
    assert (res.labels[:2] == -1).all()  # unknown rows stay unknown
    assert (
        "22 frames, video has 20" in res.note and "2 extra line(s) from line 22 dropped" in res.note
    )
    assert str(tmp_path / "t.txt") in res.note


def test_shorter_annotation_pads_with_unknown(tmp_path):
    ann = make_labels(tmp_path / "t.txt", 18)
    res = load_labels(tmp_path / "t.txt", 20)
    np.testing.assert_array_equal(res.labels[:18], ann)
    assert (res.labels[18:] == -1).all()
    assert "frames 19-20 have no annotation and are -1" in res.note


def test_unknown_length_and_no_labels(tmp_path):
    make_labels(tmp_path / "t.txt", 7)
    assert load_labels(tmp_path / "t.txt", None).labels.shape == (7, 12)
    assert load_labels(tmp_path / "t.txt", -1).labels.shape == (7, 12)
    res = load_labels("", 5)
    assert (res.labels == -1).all() and res.labels.shape == (5, 12)
    with pytest.raises(ValueError):
        load_labels("", None)


def test_malformed_raises(tmp_path):
    (tmp_path / "bad.txt").write_text("AU1\n1\n")
    with pytest.raises(AnnotationError, match=r"bad.txt:1:"):
        load_labels(tmp_path / "bad.txt", 3)
