"""`auwild-train predict-video`: a run applied to video files, OpenFace-style CSV and timeline.

A synthetic world (3 videos of 30 frames, tiny models) is extracted from its videos by the job,
a run is fitted on it for one epoch, and predict-video must give, for a video of that world,
exactly what `predict_split` gives for the same video extracted through the manifest path.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data_manifest.aus import AUS
from extract.job.timeline import video_frame_times
from train.cli import main as train_main
from train.predict import predict_split
from train.predict_video import (
    C_COLUMNS,
    COLUMNS,
    R_COLUMNS,
    face_path_note,
    faceless_ranges,
    format_ranges,
    openface_au,
)

CLIPS = Path(__file__).resolve().parents[1] / "data" / "clips"
FIT = ["--recipe", "baseline", "--no-progress", "--set", "optim.epochs=1", "optim.batch_size=4",
       "data.window=16", "data.stride=8", "model.hidden=16", "data.features.audio=audio/logmel",
       "model.use_audio=true", "data.faceless_train=keep"]  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Synthetic videos, a store extracted from them (no aligned crops), a run and a fold run."""
    from data_manifest.manifest import read_manifest, write_manifest
    from extract.cli import main as extract_main
    from tests.extract.job.job_world import make_world

    base = tmp_path_factory.mktemp("predict_video")
    w = make_world(base)
    manifest = read_manifest(w["manifest"])
    manifest["frames_dir"], manifest["n_valid"] = "", -1  # the videos, as predict-video reads
    write_manifest(manifest, base / "videos.parquet")
    store = base / "features.zarr"
    args = ["run", "--manifest", str(base / "videos.parquet"), "--store", str(store),
            "--no-progress", "--batch-size", "8", "--crop-size", "56",
            "--visual", f"dinov2={w['models']['dinov2']}", "--audio", "logmel"]  # fmt: skip
    assert extract_main(args) == 0
    src = ["--store", str(store), "--manifest", str(base / "videos.parquet")]
    assert train_main(["fit", *src, "--out", str(base / "run"), *FIT]) == 0
    assert train_main(["fit", *src, "--out", str(base / "folds"), "--folds", "2", *FIT]) == 0
    test_row = manifest[manifest["split"] == "test"].iloc[0]
    return {**w, "run": base / "run", "folds": base / "folds", "video": Path(test_row["video"]),
            "track": test_row["track_id"], "store": store}  # fmt: skip


def test_openface_names_and_face_ranges():
    assert [openface_au(a) for a in AUS][:4] == ["AU01", "AU02", "AU04", "AU06"]
    assert R_COLUMNS[-1] == "AU26_r" and C_COLUMNS[0] == "AU01_c" and len(COLUMNS) == 4 + 24
    face = np.array([0, 0, 1, 1, 0, 1, 0], bool)
    assert faceless_ranges(face) == [(1, 2), (5, 5), (7, 7)]
    assert format_ranges(faceless_ranges(face)) == "1-2, 5, 7"
    assert faceless_ranges(np.ones(3, bool)) == []


def test_a_note_says_when_faces_were_found_otherwise_than_in_training(world):
    from extract.store import StoreReader

    reader = StoreReader(str(world["store"]))
    here = reader.track_attrs(world["track"])["groups"]["face"]["track_fields"]
    assert here["aligned_input"] is False
    assert face_path_note(here, dict(here)) is None
    crops = {"aligned_input": True, "landmarks": "template"}  # a run fitted on aligned crops
    note = face_path_note(crops, here)
    assert "aligned crops" in note and "aligned_input: trained=True, here=False" in note
    assert "detector: trained=" in note  # what the crops never had is named too
    assert "upsample" not in note  # ... but not every parameter of a detector they never ran


@pytest.mark.parametrize("run_name", ["run", "folds"])
def test_csv_equals_predict_split_of_the_manifest_path(world, tmp_path, capsys, run_name):
    run, out = world[run_name], tmp_path / "out"
    args = ["predict-video", "--video", str(world["video"]), "--run", str(run)]
    assert train_main([*args, "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    stem = world["video"].stem
    table = pd.read_csv(out / f"{stem}.csv")
    assert list(table.columns) == COLUMNS
    times = video_frame_times(world["video"])
    assert len(table) == len(times) == 30
    assert table["frame"].tolist() == list(range(1, 31))
    np.testing.assert_allclose(table["timestamp"], times, atol=1e-6)

    preds = predict_split(run, "test", device="cpu")  # the same video, through its manifest row
    track = world["track"]
    np.testing.assert_allclose(table[R_COLUMNS].to_numpy(), preds.probs[track], atol=1e-6)
    np.testing.assert_array_equal(table[C_COLUMNS].to_numpy(), preds.binary[track])
    face = preds.tracks[track].face_valid
    np.testing.assert_array_equal(table["face"].to_numpy(), face.astype(int))
    np.testing.assert_array_equal(table["success"].to_numpy(), face.astype(int))
    assert (out / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    said = capsys.readouterr().out
    assert f"30 frames, {int(face.sum())} with a face" in said
    assert "1 video(s) written, 0 skipped" in said


def test_folder_with_broken_files_skips_them_and_keeps_the_store(world, tmp_path, capsys):
    folder = tmp_path / "videos"
    folder.mkdir()
    good = sorted((world["data"] / "videos").rglob("*.mp4"))[:2]
    for v in good:
        shutil.copy(v, folder / v.name)
    data = good[0].read_bytes()
    (folder / "broken.mp4").write_bytes(data[: len(data) // 3])  # truncated: cannot be probed
    zeroed = bytearray(data)  # probes (the index at the end is kept), fails to decode
    zeroed[len(data) // 20 : len(data) * 19 // 20] = bytes(len(data) * 19 // 20 - len(data) // 20)
    (folder / "zeroed.mp4").write_bytes(bytes(zeroed))
    (folder / "notes.txt").write_text("not a video\n")  # not a video suffix: not listed
    out, store = tmp_path / "out", tmp_path / "kept.zarr"
    args = ["predict-video", str(world["run"]), "--video", str(folder), "--out", str(out),
            "--keep-store", str(store), "--no-progress", "--device", "cpu"]  # fmt: skip
    assert train_main(args) == 1  # something was skipped: the exit status says so
    said = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{v.stem}.csv" for v in good] + [f"{v.stem}.png" for v in good]
    )
    skipped = [ln for ln in said.splitlines() if ln.startswith("SKIPPED")]
    assert len(skipped) == 2 and "broken.mp4" in skipped[0], said
    assert "zeroed.mp4: extraction failed at decode" in skipped[1], said
    assert "2 video(s) written, 2 skipped" in said
    for v in good:
        assert len(pd.read_csv(out / f"{v.stem}.csv")) == len(video_frame_times(v))
    from extract.store import StoreReader

    assert sorted(StoreReader(str(store)).tracks()) == sorted(v.stem for v in good)
    kept = pd.read_parquet(tmp_path / "kept.manifest.parquet")
    assert sorted(kept["track_id"]) == sorted(v.stem for v in good)
    again = ["predict", str(world["run"]), "--store", str(store), "--manifest",
             str(tmp_path / "kept.manifest.parquet"), "--out", str(tmp_path / "split")]  # fmt: skip
    assert train_main(again) == 0  # the kept pair is a store and manifest like any other
    split = pd.read_parquet(tmp_path / "split" / "predictions.parquet")
    first = pd.read_csv(out / f"{good[0].stem}.csv")
    mine = split[split["track"] == good[0].stem]
    np.testing.assert_allclose(mine[[f"prob_{a}" for a in AUS]], first[R_COLUMNS], atol=1e-6)

    capsys.readouterr()
    assert train_main(args) == 1  # again: the kept tracks are complete, nothing re-extracted
    assert "2 video(s) written, 2 skipped" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_csv(out / f"{good[0].stem}.csv"), first)
    other = sorted((world["data"] / "videos").rglob("*.mp4"))[2]
    shutil.copy(other, folder / good[0].name)  # another file under a name the store holds
    assert train_main(args) == 2
    assert "--keep-store" in capsys.readouterr().err


def test_moved_model_folder_is_one_line_and_models_dir_finds_it(world, tmp_path, capsys):
    models = Path(world["models"]["dinov2"]).parent
    moved = tmp_path / "moved_models"
    args = ["predict-video", "--run", str(world["run"]), "--video", str(world["video"]),
            "--out", str(tmp_path / "out"), "--no-progress", "--device", "cpu"]  # fmt: skip
    shutil.move(str(models), str(moved))
    try:
        assert train_main(args) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        assert "visual encoder 'dinov2'" in err and "--models-dir" in err, err
        assert "--visual dinov2=PATH" in err
        assert train_main([*args, "--models-dir", str(moved)]) == 0
        capsys.readouterr()
        assert train_main([*args, "--visual", f"dinov2={moved / 'dinov2'}"]) == 0
    finally:
        shutil.move(str(moved), str(models))
    capsys.readouterr()


def test_other_weights_are_refused_with_the_fields_named(world, tmp_path, capsys):
    other = world["models"]["dinov2_registers"]
    args = ["predict-video", "--run", str(world["run"]), "--video", str(world["video"]),
            "--out", str(tmp_path / "out"), "--visual", f"dinov2={other}"]  # fmt: skip
    assert train_main(args) == 2
    err = capsys.readouterr().err
    assert "visual/dinov2" in err and "content_hash" in err and "would differ" in err, err
    assert not (tmp_path / "out").exists()
    assert train_main([*args[:-2], "--audio", "wavlm=/x"]) == 2
    assert "does not read that encoder" in capsys.readouterr().err


def test_video_argument_mistakes_are_one_line(world, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x\n")
    base = ["predict-video", str(world["run"]), "--out", str(tmp_path / "out"), "--video"]
    assert train_main([*base, str(tmp_path / "empty")]) == 2
    assert "no video file in" in capsys.readouterr().err
    assert train_main([*base, str(tmp_path / "missing.mp4")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert train_main([*base, str(world["video"]), "--run", str(tmp_path)]) == 2
    assert "give the run once" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_real_clip_with_audio(world, tmp_path, capsys):
    """A real MPEG-4 Part 2 clip with 32 kHz AAC: one row per decoded frame, faces said."""
    clip = CLIPS / "mpeg4_part2_aac32k.mp4"
    out = tmp_path / "out"
    args = ["predict-video", "--run", str(world["run"]), "--video", str(clip), "--out", str(out),
            "--device", "cpu"]  # fmt: skip
    assert train_main(args) == 0
    table = pd.read_csv(out / "mpeg4_part2_aac32k.csv")
    times = video_frame_times(clip)
    assert len(table) == len(times) == 149
    assert list(table.columns) == COLUMNS
    assert ((table[R_COLUMNS] >= 0) & (table[R_COLUMNS] <= 1)).all().all()
    assert set(np.unique(table[C_COLUMNS])) <= {0, 1}
    said = capsys.readouterr().out
    n_face = int(table["face"].sum())
    line = next(ln for ln in said.splitlines() if ln.startswith("wrote"))
    assert f"149 frames, {n_face} with a face" in line
    if n_face < 149:
        first = int(table.loc[table["face"] == 0, "frame"].iloc[0])
        assert "no face in frames " in line and str(first) in line
    assert (out / "mpeg4_part2_aac32k.png").stat().st_size > 0
