from __future__ import annotations

import math

import pandas as pd
import pytest

from data_manifest.manifest import (
    MANIFEST_COLUMNS,
    ManifestError,
    make_manifest,
    read_manifest,
    write_manifest,
)


def test_round_trip_keeps_schema(tmp_path):
    df = make_manifest(
        [
            {
                "track_id": "v1_left",
                "split": "train",
                "video": "/x/v1.mp4",
                "side": "left",
                "n_frames": 10,
                "fps": 25.0,
            },
            {"track_id": "v2", "split": "test"},
        ]
    )
    assert tuple(df.columns) == MANIFEST_COLUMNS
    assert df.loc[0, "video_id"] == "v1"  # filled from the video stem
    path = write_manifest(df, tmp_path / "m.parquet")
    back = read_manifest(path)
    assert tuple(back.columns) == MANIFEST_COLUMNS
    assert back.loc[1, "n_valid"] == -1 and back.loc[1, "n_frames"] == -1
    assert math.isnan(back.loc[1, "fps"]) and back.loc[1, "status"] == "ok"
    assert back["n_frames"].dtype == "int64" and back["fps"].dtype == "float64"
    pd.testing.assert_frame_equal(back, df)


def test_bad_rows_are_refused(tmp_path):
    with pytest.raises(ManifestError, match="split 'training'"):
        make_manifest([{"track_id": "a", "split": "training"}])
    with pytest.raises(ManifestError, match="side 'middle'"):
        make_manifest([{"track_id": "a", "split": "train", "side": "middle"}])
    with pytest.raises(ManifestError, match="more than once"):
        make_manifest([{"track_id": "a", "split": "train"}, {"track_id": "a", "split": "val"}])


def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(ManifestError, match="not found"):
        read_manifest(tmp_path / "none.parquet")
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    with pytest.raises(ManifestError, match=str(bad)):
        read_manifest(bad)
    pd.DataFrame({"x": [1]}).to_parquet(tmp_path / "other.parquet")
    with pytest.raises(ManifestError, match="missing required column"):
        read_manifest(tmp_path / "other.parquet")
