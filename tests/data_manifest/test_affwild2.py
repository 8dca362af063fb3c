from __future__ import annotations

import pytest

from data_manifest.affwild2 import build_affwild2_manifest, read_track_list, split_side
from data_manifest.cli import main
from data_manifest.manifest import read_manifest
from data_manifest.user_error import UserError

from .conftest import make_frames, make_labels, make_video

ANN = "2nd_ABAW_Annotations/AU_Detection_Challenge"


@pytest.fixture()
def affwild_root(tmp_path):
    """A small real-layout tree: batch folders, a pair, an .avi, gaps, a bad file, a missing video."""
    root = tmp_path / "Aff-Wild2"
    make_video(root / "batch1" / "10-60-1280x720.mp4", 12)
    make_video(root / "batch2" / "nested" / "video7.avi", 9)
    make_video(root / "batch2" / "test_clip.mp4", 6)
    make_labels(root / ANN / "Train_Set" / "10-60-1280x720_left.txt", 12)
    make_labels(root / ANN / "Train_Set" / "10-60-1280x720_right.txt", 12, unknown=3)
    make_labels(root / ANN / "Validation_Set" / "video7.txt", 9)
    make_labels(root / ANN / "Validation_Set" / "gone.txt", 5)  # no video anywhere
    bad = root / ANN / "Train_Set" / "video7_broken.txt"
    bad.write_text("AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26\n" + "0," * 11 + "2\n")
    make_frames(root / "cropped_aligned" / "10-60-1280x720_left", [1, 2, 3, 5, 8])
    make_frames(root / "cropped_aligned" / "video7", range(1, 10))
    (root / "Test_Set_AU_Detection_Challenge.txt").write_text("test_clip\n\n")
    return root


def test_layout_found_by_structure(affwild_root):
    df = build_affwild2_manifest(affwild_root).set_index("track_id")
    assert sorted(df.index) == [
        "10-60-1280x720_left",
        "10-60-1280x720_right",
        "gone",
        "test_clip",
        "video7",
        "video7_broken",
    ]
    left, right = df.loc["10-60-1280x720_left"], df.loc["10-60-1280x720_right"]
    assert left["video"] == right["video"] and left["video"].endswith("batch1/10-60-1280x720.mp4")
    assert (left["side"], right["side"]) == ("left", "right")
    assert left["video_id"] == right["video_id"] == "10-60-1280x720"
    assert left["n_valid"] == 5 and right["n_valid"] == -1 and right["frames_dir"] == ""
    assert left["n_frames"] == 12 and left["fps"] == 25.0
    assert left["n_annotated"] == 12 and right["n_annotated"] == 9
    v7 = df.loc["video7"]
    assert v7["split"] == "val" and v7["video"].endswith("video7.avi") and v7["n_frames"] == 9
    assert v7["side"] == "none" and v7["n_valid"] == 9
    assert df.loc["test_clip", "split"] == "test" and df.loc["test_clip", "labels"] == ""
    assert (
        df.loc["gone", "status"] == "missing_video" and "no video gone" in df.loc["gone", "error"]
    )
    broken = df.loc["video7_broken"]
    assert broken["status"] == "bad_labels" and "video7_broken.txt:2:" in broken["error"]
    assert broken["video_id"] == "video7_broken"  # no _left/_right suffix: its own video, missing
    assert (df.drop(index=["gone", "video7_broken"])["status"] == "ok").all()


def test_cli_reports_missing_video(affwild_root, tmp_path, capsys):
    out = tmp_path / "m.parquet"
    assert main(["affwild2", "--root", str(affwild_root), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "gone: missing_video" in captured.err
    assert "video7_broken: bad_labels" in captured.err
    assert "missing_video=1" in captured.out
    assert len(read_manifest(out)) == 6
    assert (
        main(["affwild2", "--root", str(affwild_root), "--out", str(out), "--strict", "--no-probe"])
        == 1
    )
    assert read_manifest(out)["n_frames"].eq(-1).all()


def test_test_list_choice(affwild_root, tmp_path):
    (affwild_root / "VA_test_list.txt").write_text("x\n")  # another task's list: not AU-like
    assert "test_clip" in set(build_affwild2_manifest(affwild_root)["track_id"])
    (affwild_root / "old_AU_test_list.txt").write_text("x\n")
    with pytest.raises(UserError, match="--test-list"):
        build_affwild2_manifest(affwild_root)
    lst = tmp_path / "mine.txt"
    lst.write_text("test_clip.mp4\n# comment\nvideo9_left\n")
    df = build_affwild2_manifest(affwild_root, test_list=lst).set_index("track_id")
    assert (
        df.loc["video9_left", "status"] == "missing_video"
        and df.loc["video9_left", "side"] == "left"
    )
    assert read_track_list(lst) == ["test_clip", "video9_left"]


def test_no_annotations_is_a_user_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="ABAW_Annotations"):
        build_affwild2_manifest(tmp_path / "empty")


def test_split_side():
    assert split_side("a_left") == ("a", "left")
    assert split_side("a_right") == ("a", "right")
    assert split_side("a_b") == ("a_b", "none")
