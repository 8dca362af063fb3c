from __future__ import annotations

import pytest

from data_manifest.cli import main
from data_manifest.csv_import import build_csv_manifest
from data_manifest.manifest import read_manifest
from data_manifest.user_error import UserError

from .conftest import make_frames, make_labels, make_video


def test_table_with_relative_paths(tmp_path):
    make_video(tmp_path / "vids" / "a.mp4", 8)
    make_labels(tmp_path / "labels" / "a.txt", 8, unknown=2)
    make_frames(tmp_path / "faces" / "a", [1, 2, 4])
    (tmp_path / "t.csv").write_text(
        "track_id,video,split,labels,frames_dir,side\n"
        "a,vids/a.mp4,train,labels/a.txt,faces/a,left\n"
        "b,vids/missing.mp4,Validation,,,\n"
    )
    df = build_csv_manifest(tmp_path / "t.csv").set_index("track_id")
    a, b = df.loc["a"], df.loc["b"]
    assert a["video"] == str((tmp_path / "vids" / "a.mp4").resolve())
    assert (
        a["n_frames"] == 8 and a["n_valid"] == 3 and a["n_annotated"] == 6 and a["side"] == "left"
    )
    assert a["status"] == "ok" and a["video_id"] == "a"
    assert b["split"] == "val" and b["status"] == "missing_video" and b["side"] == "none"


@pytest.mark.parametrize(
    "text, match",
    [
        ("track_id,video\na,x.mp4\n", r"t.csv:1: .*lacks \['split'\]"),
        ("track_id,video,split\na,x.mp4,holdout\n", r"t.csv:2: split 'holdout'"),
        (
            "track_id,video,split\na,x.mp4,train\na,y.mp4,val\n",
            r"t.csv:3: track_id 'a' already on line 2",
        ),
        ("track_id,video,split,colour\na,x.mp4,train,red\n", r"t.csv:1: unknown column"),
    ],
)
def test_bad_tables_name_file_and_line(tmp_path, text, match):
    (tmp_path / "t.csv").write_text(text)
    with pytest.raises(UserError, match=match):
        build_csv_manifest(tmp_path / "t.csv")


def test_cli_csv(tmp_path, capsys):
    make_video(tmp_path / "a.mp4", 5)
    (tmp_path / "t.csv").write_text("track_id,video,split\na,a.mp4,test\n")
    assert (
        main(["csv", "--table", str(tmp_path / "t.csv"), "--out", str(tmp_path / "m.parquet")]) == 0
    )
    assert read_manifest(tmp_path / "m.parquet").loc[0, "n_frames"] == 5
    assert (
        main(["csv", "--table", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "m.parquet")])
        == 2
    )
    assert "table not found" in capsys.readouterr().err
