"""`make demo` run again after the code changed starts its folder afresh, and only its own."""

from __future__ import annotations

from bench.demo import STAMP, code_stamp, start_afresh_if_code_changed


def _demo_folder(tmp_path, stamp: str | None):
    out = tmp_path / "demo_out"
    (out / "data").mkdir(parents=True)
    (out / "data" / "synth_truth.json").write_text("{}")
    (out / "features.zarr").mkdir()
    if stamp is not None:
        (out / STAMP).write_text(stamp + "\n")
    return out


def test_a_demo_of_other_code_is_started_afresh(tmp_path, capsys):
    out = _demo_folder(tmp_path, "0" * 16)
    start_afresh_if_code_changed(out)
    assert sorted(p.name for p in out.iterdir()) == [STAMP]
    assert (out / STAMP).read_text().strip() == code_stamp()
    assert "starting it afresh" in capsys.readouterr().out


def test_a_demo_from_before_the_stamp_is_started_afresh(tmp_path):
    out = _demo_folder(tmp_path, None)
    start_afresh_if_code_changed(out)
    assert not (out / "features.zarr").exists()


def test_the_same_code_keeps_the_demo_and_other_folders_are_left_alone(tmp_path, capsys):
    out = _demo_folder(tmp_path, code_stamp())
    start_afresh_if_code_changed(out)
    assert (out / "features.zarr").is_dir() and (out / "data" / "synth_truth.json").is_file()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    start_afresh_if_code_changed(mine)
    assert (mine / "notes.txt").read_text() == "keep"
    assert "afresh" not in capsys.readouterr().out
