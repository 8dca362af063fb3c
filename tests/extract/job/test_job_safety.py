"""The job loses nothing without asking and says everything it does not do.

Overwrite keeps the groups not named, a copied dataset is the same dataset, changed sources
stop the job, bad rows and unknown ids are named, the failure table names the right stage, a
rerun with nothing to do loads no model, and fingerprints record each track's face mode.
"""

from __future__ import annotations

import json
import re
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest

from extract.cli import main as extract_main
from tests.extract.job.job_world import args_for, arrays_of, assert_same_arrays, chunk_files

VISUAL = ("face", "visual/dinov2")
AUDIO = ("audio", "audio/logmel")


def _manifest(world, tmp_path, change) -> str:
    """The world's manifest with `change(df)` applied, written without the manifest checks."""
    df = pd.read_parquet(world["manifest"])
    df = change(df.copy())
    path = tmp_path / "m.parquet"
    df.to_parquet(path)
    return str(path)


def _groups_of(arrays: dict, groups: tuple[str, ...]) -> dict:
    from extract.store import group_of

    return {k: v for k, v in arrays.items() if group_of(k.split("/", 1)[1]) in groups}


def _forbid_models(monkeypatch) -> None:
    import extract.encoders
    import extract.faces

    def refuse(*args, **kwargs):
        raise AssertionError(f"a model was loaded: {args}")

    monkeypatch.setattr(extract.encoders, "load_visual_encoder", refuse)
    monkeypatch.setattr(extract.encoders, "load_audio_encoder", refuse)
    monkeypatch.setattr(extract.faces, "get_landmark_backend", refuse)


def test_rerun_with_nothing_to_do_loads_no_model(world, reference_store, monkeypatch, capsys):
    _forbid_models(monkeypatch)
    capsys.readouterr()
    assert extract_main(args_for(world, reference_store)) == 0
    assert re.search(r"tracks done\s+0\n", capsys.readouterr().out)


@pytest.mark.parametrize(
    "kept, named",
    [(VISUAL, {"visual": False, "audio": "logmel"}), (AUDIO, {"visual": True, "audio": None})],
)
def test_overwrite_with_one_encoder_keeps_the_others(
    world, reference_store, tmp_path, kept, named, capsys
):
    store = tmp_path / "over.zarr"
    shutil.copytree(reference_store, store)
    reference = arrays_of(reference_store)
    kept_files = {k: v for k, v in chunk_files(store).items() if any(f"/{g}/" in k for g in kept)}
    assert kept_files
    assert extract_main(args_for(world, store, "--overwrite", **named)) == 0
    out = capsys.readouterr().out
    assert re.search(r"tracks done\s+3\n", out), out
    after = chunk_files(store)
    for key, data in kept_files.items():  # the groups not named are not touched at all
        assert after.get(key) == data, key
    assert_same_arrays(arrays_of(store), reference)


def _copy_world(world, tmp_path) -> tuple[str, object]:
    """The world's data copied to another folder, with a manifest rebuilt there."""
    from data_manifest.cli import main as manifest_main

    copy = tmp_path / "moved"
    shutil.copytree(world["data"], copy)
    manifest = tmp_path / "moved.parquet"
    assert manifest_main(["affwild2", "--root", str(copy), "--out", str(manifest)]) == 0
    return str(manifest), copy


def test_copied_dataset_reruns_as_already_complete(world, reference_store, tmp_path, capsys):
    store = tmp_path / "s.zarr"
    shutil.copytree(reference_store, store)
    manifest, _ = _copy_world(world, tmp_path)
    before = chunk_files(store)
    capsys.readouterr()
    assert extract_main(args_for(world, store, manifest=manifest)) == 0
    out = capsys.readouterr().out
    assert re.search(r"tracks skipped\s+3\n", out) and re.search(r"tracks done\s+0\n", out), out
    assert chunk_files(store) == before


def test_changed_sources_stop_the_job_until_overwrite(world, reference_store, tmp_path, capsys):
    store = tmp_path / "s.zarr"
    shutil.copytree(reference_store, store)
    manifest, copy = _copy_world(world, tmp_path)
    tid = pd.read_parquet(manifest)["track_id"].iloc[0]
    first = sorted((copy / "cropped_aligned" / tid).glob("*.jpg"))[0]
    image = cv2.imread(str(first))
    cv2.imwrite(str(first), 255 - image)  # another face image, same name and count
    before = chunk_files(store)
    capsys.readouterr()
    assert extract_main(args_for(world, store, manifest=manifest)) == 2
    err = capsys.readouterr().err
    assert tid in err and "--overwrite" in err and "frames_dir" in err, err
    assert chunk_files(store) == before  # nothing extracted
    # --overwrite with the audio encoder only: the track is rewritten whole, and says so
    assert extract_main(args_for(world, store, "--overwrite", manifest=manifest, visual=False)) == 0
    out = capsys.readouterr().out
    assert re.search(rf"REWRITTEN {tid}: sources changed .*dropped groups face, visual/dinov2", out)
    from extract.store import StoreReader

    reader = StoreReader(str(store), consolidated=False)
    assert sorted(reader.track_attrs(tid)["groups"]) == sorted(AUDIO)
    other = [t for t in reader.tracks() if t != tid]
    assert all("visual/dinov2" in reader.track_attrs(t)["groups"] for t in other)


def test_bad_track_id_fails_its_row_only(world, tmp_path, capsys):
    def rename(df):
        df.loc[1, "track_id"] = "bad/id"
        return df

    manifest = _manifest(world, tmp_path, rename)
    store = tmp_path / "s.zarr"
    capsys.readouterr()
    assert extract_main(args_for(world, store, manifest=manifest)) == 1
    out = capsys.readouterr().out
    assert "FAILED bad/id [plan]" in out and "manifest row 2" in out, out
    assert re.search(r"tracks done\s+2\n", out), out
    records = [json.loads(x) for x in (tmp_path / "s.zarr.failures.jsonl").read_text().splitlines()]
    assert [(r["track"], r["stage"]) for r in records] == [("bad/id", "plan")]


class _Breaking:
    """An encoder that works for its dry run, then fails: an error inside the encoder stage."""

    def __init__(self, real):
        self.real = real
        if hasattr(real, "outputs"):  # visual encoders size their arrays with one dry run
            self.outputs = real.outputs

    def __getattr__(self, name):
        return getattr(self.real, name)

    def encode(self, *args):
        raise RuntimeError("encoder exploded")


@pytest.mark.parametrize("kind, stage", [("visual", "visual:dinov2"), ("audio", "audio:logmel")])
def test_failure_table_records_the_stage_of_an_encoder_error(
    world, tmp_path, monkeypatch, kind, stage
):
    import extract.encoders

    name = f"load_{kind}_encoder"
    real = getattr(extract.encoders, name)
    monkeypatch.setattr(extract.encoders, name, lambda *a, **k: _Breaking(real(*a, **k)))
    store = tmp_path / "s.zarr"
    assert extract_main(args_for(world, store)) == 1
    records = [json.loads(x) for x in (tmp_path / "s.zarr.failures.jsonl").read_text().splitlines()]
    assert len(records) == 3
    assert {r["stage"] for r in records} == {stage}
    assert all("encoder exploded" in r["error"] for r in records)


def test_unknown_track_ids_and_skipped_rows_are_named(world, tmp_path, capsys):
    def unusable(df):
        df.loc[1, "status"] = "missing_video"
        df.loc[1, "error"] = "video not found"
        return df

    manifest = _manifest(world, tmp_path, unusable)
    ids = list(pd.read_parquet(manifest)["track_id"])
    store = tmp_path / "s.zarr"
    only = f"{ids[0]},{ids[1]},nosuch_track"
    capsys.readouterr()
    assert extract_main(args_for(world, store, "--tracks", only, manifest=manifest)) == 1
    captured = capsys.readouterr()
    assert "nosuch_track" in captured.err
    assert "UNKNOWN --tracks id(s), not in the manifest: nosuch_track" in captured.out
    assert f"SKIPPED manifest row 2 {ids[1]}: status missing_video: video not found" in captured.out
    assert re.search(r"tracks done\s+1\n", captured.out), captured.out


def test_fingerprints_record_each_tracks_face_mode_and_few_faces_are_named(world, tmp_path, capsys):
    """A video-input track and a frames-folder track; a track with blank frames has no face."""
    blank = tmp_path / "blank"
    shutil.copytree(world["data"] / "cropped_aligned" / "video002", blank)
    for path in blank.glob("*.jpg"):
        cv2.imwrite(str(path), np.full((56, 56, 3), 128, np.uint8))

    def mixed(df):
        df.loc[0, "frames_dir"] = ""  # video000 from its video
        df.loc[2, "frames_dir"] = str(blank)  # video002: no face anywhere
        return df

    manifest = _manifest(world, tmp_path, mixed)
    store = tmp_path / "s.zarr"
    capsys.readouterr()
    assert extract_main(args_for(world, store, manifest=manifest)) == 0
    out = capsys.readouterr().out
    assert "FEW FACES video002: no face in any frame" in out, out
    from extract.store import StoreReader

    reader = StoreReader(str(store), consolidated=False)
    video = reader.track_attrs("video000")["groups"]
    frames = reader.track_attrs("video001")["groups"]
    assert video["face"]["track_fields"]["aligned_input"] is False
    assert video["face"]["track_fields"]["detector"] != "whole-image"
    assert frames["face"]["track_fields"]["aligned_input"] is True
    assert frames["face"]["track_fields"]["detector"] == "whole-image"
    assert video["visual/dinov2"]["track_fields"]["aligned_input"] is False
    assert video["face"]["group_fingerprint"] == frames["face"]["group_fingerprint"]
    assert video["face"]["fingerprint"] != frames["face"]["fingerprint"]
    from extract.store import FingerprintMismatch

    # the trainer does not mix tracks from full frames with tracks from aligned crops...
    with pytest.raises(FingerprintMismatch, match="aligned_input"):
        reader.require_groups(["face/valid"])
    # ...but the audio groups agree, though one track's video differs in how its face was found
    reader.require_groups(["audio/logmel", "audio/valid"])


def test_a_store_from_one_job_reads_as_one_training_set(reference_store):
    from extract.store import StoreReader

    reader = StoreReader(str(reference_store))
    groups = reader.require_groups(["face", "visual/dinov2", "audio", "audio/logmel"])
    assert set(groups) == {"face", "visual/dinov2", "audio", "audio/logmel"}


def test_bench_times_the_job_stages(world):
    from data_manifest.manifest import read_manifest
    from extract.job.bench import run_bench
    from extract.job.config import ExtractConfig

    cfg = ExtractConfig(
        visual={"dinov2": world["models"]["dinov2"]},
        audio={"logmel": None},
        batch_size=8,
        crop_size=56,
    )
    result = run_bench(read_manifest(world["manifest"]), cfg)
    assert result["frames"] == 30 and result["end_to_end_fps"] > 0 and result["ratio"] > 0


def test_a_track_leased_by_another_writer_is_skipped_and_named(world, tmp_path, capsys):
    from extract.store import StoreWriter

    store = tmp_path / "s.zarr"
    holder = StoreWriter(str(store), create=True).open_track("video001", n_frames=30)
    try:
        capsys.readouterr()
        assert extract_main(args_for(world, store)) == 0
        out = capsys.readouterr().out
    finally:
        holder.abort()
    assert re.search(r"LEASED video001: being written by pid \d+ on host .* since ", out), out
    assert re.search(r"tracks done\s+2\n", out) and re.search(r"tracks leased elsewhere\s+1\n", out)
    capsys.readouterr()
    assert extract_main(args_for(world, store)) == 0  # lease dropped: the next run takes it
    assert re.search(r"tracks done\s+1\n", capsys.readouterr().out)
