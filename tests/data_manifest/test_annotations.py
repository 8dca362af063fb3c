from __future__ import annotations

import numpy as np
import pytest

from data_manifest.annotations import AnnotationError, parse_annotation_file, write_annotation_file
from data_manifest.aus import ABAW_HEADER, AUS, N_AUS

GOOD_ROW = "0,1,0,0,0,0,1,0,0,0,1,-1"


def _write(tmp_path, text, name="track.txt"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_aus_order():
    assert AUS == (
        "AU1",
        "AU2",
        "AU4",
        "AU6",
        "AU7",
        "AU10",
        "AU12",
        "AU15",
        "AU23",
        "AU24",
        "AU25",
        "AU26",
    )


def test_round_trip(tmp_path):
    labels = np.random.default_rng(0).integers(-1, 2, (50, N_AUS)).astype(np.int8)
    p = write_annotation_file(tmp_path / "a.txt", labels)
    assert p.read_text().splitlines()[0] == ABAW_HEADER
    np.testing.assert_array_equal(parse_annotation_file(p), labels)


def test_trailing_blank_lines_and_spaces_are_fine(tmp_path):
    p = _write(
        tmp_path, ABAW_HEADER + "\n" + GOOD_ROW + "\n" + GOOD_ROW.replace(",", ", ") + "\n\n\n"
    )
    arr = parse_annotation_file(p)
    assert arr.shape == (2, 12) and arr.dtype == np.int8
    assert arr[0, 1] == 1 and arr[0, 11] == -1


def test_header_only_gives_zero_frames(tmp_path):
    assert parse_annotation_file(_write(tmp_path, ABAW_HEADER + "\n")).shape == (0, 12)


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("AU1,AU2,AU4\n" + GOOD_ROW + "\n", 1, "header"),
        ("", 1, "empty file"),
        (
            ABAW_HEADER + "\n" + GOOD_ROW + "\n" + GOOD_ROW.replace("0,1,0", "0,2,0", 1) + "\n",
            3,
            "AU2 value '2'",
        ),
        (
            ABAW_HEADER + "\n" + GOOD_ROW + "\n" + GOOD_ROW + "\n" + "0,1,0,0\n",
            4,
            "expected 12 values, found 4",
        ),
        (
            ABAW_HEADER + "\n" + GOOD_ROW + "\n" + GOOD_ROW.replace("1,-1", "1,x") + "\n",
            3,
            "AU26 value 'x' is not a number",
        ),
        (ABAW_HEADER + "\n" + GOOD_ROW + "\n\n" + GOOD_ROW + "\n", 3, "empty row"),
        (ABAW_HEADER + "\n" + GOOD_ROW + ",1\n", 2, "expected 12 values, found 13"),
    ],
    ids=["wrong-header", "empty", "value-2", "short-row", "non-numeric", "blank-row", "long-row"],
)
def test_malformed_names_file_and_line(tmp_path, text, line, words):
    p = _write(tmp_path, text, "bad_track.txt")
    with pytest.raises(AnnotationError) as err:
        parse_annotation_file(p)
    assert err.value.line == line
    assert err.value.path == str(p)
    assert str(err.value).startswith(f"{p}:{line}: ")
    assert words in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(AnnotationError, match="file not found"):
        parse_annotation_file(tmp_path / "nope.txt")
