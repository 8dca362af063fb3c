from __future__ import annotations

import json

from data_manifest.cli import main
from data_manifest.manifest import make_manifest, write_manifest
from data_manifest.validate import validate_manifest

from .conftest import make_frames, make_labels, make_video


def _row(tmp_path, name, n_video, n_labels, split="train", **kw):
    video = make_video(tmp_path / f"{name}.mp4", n_video)
    labels = make_labels(tmp_path / f"{name}.txt", n_labels, unknown=1)
    row = {
        "track_id": name,
        "split": split,
        "video": str(video),
        "labels": str(tmp_path / f"{name}.txt"),
        "n_annotated": int((labels != -1).any(1).sum()),
        "n_frames": n_video,
    }
    row.update(kw)
    return row


def test_clean_manifest_summary(tmp_path):
    make_frames(tmp_path / "faces_a", [1, 2, 3])
    rows = [
        _row(tmp_path, "a", 6, 6, frames_dir=str(tmp_path / "faces_a"), n_valid=3),
        _row(tmp_path, "b", 5, 5, split="val"),
        {"track_id": "c", "split": "test", "video": str(make_video(tmp_path / "c.mp4", 4))},
    ]
    report = validate_manifest(make_manifest(rows), "m.parquet")
    assert report.ok, [str(p) for p in report.problems]
    s = report.summary()
    assert (s["train"]["tracks"], s["train"]["frames"], s["train"]["valid_frames"]) == (1, 6, 3)
    assert (s["val"]["tracks"], s["val"]["frames"], s["val"]["annotated_frames"]) == (1, 5, 4)
    assert (s["test"]["tracks"], s["test"]["frames"]) == (1, 4)
    assert 0 < s["train"]["positive_rate"]["AU1"] < 1
    assert "AU25=" in report.format_summary()


def test_problems_name_file_and_line(tmp_path):
    long_row = _row(tmp_path, "long", 6, 8)
    short_row = _row(tmp_path, "short", 6, 5)
    bad = _row(tmp_path, "bad", 4, 4)
    lines = (tmp_path / "bad.txt").read_text().splitlines()
    lines[3] = "0,0,0,0,0,0,0,0,0,0,0,7"
    (tmp_path / "bad.txt").write_text("\n".join(lines) + "\n")
    gone = {"track_id": "gone", "split": "val", "video": str(tmp_path / "gone.mp4")}
    make_frames(tmp_path / "faces_x", [1, 9])
    past = _row(tmp_path, "past", 6, 6, frames_dir=str(tmp_path / "faces_x"), n_valid=2)
    report = validate_manifest(make_manifest([long_row, short_row, bad, gone, past]), "m.parquet")
    text = [str(p) for p in report.problems]
    assert (
        f"{tmp_path / 'long.txt'}:8: [long] annotation has 8 frames, video has 6: 2 extra line(s) from line 8 dropped"
        in text
    )
    assert any(
        t.startswith(f"{tmp_path / 'short.txt'}:6: [short]") and "frames 6-6" in t for t in text
    )
    assert any(t.startswith(f"{tmp_path / 'bad.txt'}:4: [bad] AU26 value '7'") for t in text)
    assert f"{tmp_path / 'gone.mp4'}: [gone] video not found" in text
    assert any("m.parquet:4: [gone] val track without a labels file" == t for t in text)
    assert any(t.startswith(f"{tmp_path / 'faces_x'}: [past] image 00009 is past") for t in text)
    tolerant = validate_manifest(make_manifest([long_row, short_row]), "m", tolerate_length=2)
    assert tolerant.ok and len(tolerant.warnings) == 2


def test_cli_validate_exit_codes(tmp_path, capsys):
    good = write_manifest(make_manifest([_row(tmp_path, "a", 5, 5)]), tmp_path / "good.parquet")
    assert main(["validate", str(good), "--json", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["splits"]["train"]["frames"] == 5
    bad = write_manifest(make_manifest([_row(tmp_path, "b", 5, 7)]), tmp_path / "bad.parquet")
    assert main(["validate", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'b.txt'}:7: [b] annotation has 7 frames, video has 5" in err
    assert main(["validate", str(tmp_path / "none.parquet")]) == 2
