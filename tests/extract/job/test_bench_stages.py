"""The bench runs the job's own stages: the stage timer changes no output, the bench picks the
track the job would extract, and its writer-only pass writes what the job writes."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from tests.extract.job.job_world import arrays_of, assert_same_arrays


def _cfg(world, **kw):
    from extract.job.config import ExtractConfig

    return ExtractConfig(
        visual={"dinov2": world["models"]["dinov2"]},
        audio={"logmel": None},
        batch_size=8,
        crop_size=56,
        **kw,
    )


def _plan_of(world, cfg, index: int = 0):
    from extract.job.bench import pick_track

    manifest = pd.read_parquet(world["manifest"])
    return pick_track(manifest, cfg, str(manifest["track_id"].iloc[index]))


def test_face_batches_with_a_timer_give_the_same_batches_and_time_each_stage(world):
    from extract.job.models import ModelCache
    from extract.job.stages import face_batches, start_faces

    cfg = _cfg(world, visual_input="video", detect_every=3)
    p = _plan_of(world, cfg)
    models = ModelCache(cfg)
    backend, use_frames, _ = start_faces(p, cfg, models)
    plain = list(face_batches(p, 30, cfg, backend, use_frames))
    seconds: dict[str, list[float]] = {}
    backend, use_frames, _ = start_faces(p, cfg, models)
    timed = list(
        face_batches(
            p, 30, cfg, backend, use_frames, lambda k, s: seconds.setdefault(k, []).append(s)
        )
    )
    assert len(plain) == len(timed) == 4  # 30 frames in batches of 8
    for a, b in zip(plain, timed, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert sum(len(b["valid"]) for b in timed) == 30 and any(b["valid"].any() for b in timed)
    # decode is timed once more than there are batches: the call that finds the stream's end
    assert {k: len(v) for k, v in seconds.items()} == {
        "decode": 5,
        "detect": 4,
        "landmarks": 4,
        "warp": 4,
    }
    assert all(s >= 0 for v in seconds.values() for s in v)
    assert sum(seconds["detect"]) > 0 and sum(seconds["decode"]) > 0


def test_bench_picks_the_track_the_job_would_extract(world, tmp_path):
    from data_manifest.user_error import UserError
    from extract.job.bench import pick_track

    cfg = _cfg(world)
    df = pd.read_parquet(world["manifest"])
    ids = [str(t) for t in df["track_id"]]
    df.loc[0, "status"] = "missing_video"
    df.loc[0, "error"] = "video not found"
    assert pick_track(df, cfg, None).track_id == ids[1]  # the first usable row
    with pytest.raises(UserError, match=rf"{ids[0]}.*row 1.*status missing_video"):
        pick_track(df, cfg, ids[0])
    with pytest.raises(UserError, match="not in the manifest"):
        pick_track(df, cfg, "nosuch")
    df["status"] = "missing_video"
    with pytest.raises(UserError, match="no usable track with a video"):
        pick_track(df, cfg, None)


def test_writer_only_pass_writes_what_the_job_writes(world, tmp_path):
    """The bench's passes (faces, encoders, writer) give a store equal, array for array, to the
    job's store of the same track."""
    from extract.job import bench
    from extract.job.models import ModelCache
    from extract.job.runner import run_extraction
    from extract.job.stages import probe_times

    cfg = _cfg(world, visual_input="video")
    p = _plan_of(world, cfg)
    job_store = tmp_path / "job.zarr"
    models = ModelCache(cfg)
    summary = run_extraction(
        pd.read_parquet(world["manifest"]),
        str(job_store),
        cfg,
        tracks={p.track_id},
        progress=False,
        models=models,
    )
    assert summary.done == [p.track_id]
    times = probe_times(p, cfg, store="")
    stages = dict.fromkeys(bench.STAGES, 0.0)
    batches, rate, mode = bench._faces_pass(p, len(times), cfg, models, stages)
    assert 0 < rate.rate <= 1 and rate.frames == 30
    from extract.job.stages import track_audio

    audio = track_audio(p, cache=False)
    out = {
        "visual": bench._encode_visual(cfg, models, batches),
        "audio": bench._encode_audio(cfg, models, audio, times),
        "audio_valid": bench.audio_valid(audio, times),
    }
    bench_store = tmp_path / "bench.zarr"
    bench._write_track(bench_store, p, cfg, models, times, (batches, mode), out)
    assert_same_arrays(arrays_of(bench_store, False), arrays_of(job_store, False))
    from extract.store import StoreReader

    job_groups = StoreReader(str(job_store), consolidated=False).track_attrs(p.track_id)["groups"]
    attrs = StoreReader(str(bench_store), consolidated=False).track_attrs(p.track_id)
    assert attrs["groups"] == job_groups  # same groups, fingerprints and per-track fields


def test_few_faces_are_said_once_by_the_face_backend(world, tmp_path, caplog):
    """A track without a face: one warning line naming it (the backend's), not one per layer."""
    import shutil

    import cv2

    from extract.job.runner import run_extraction

    blank = tmp_path / "blank"
    shutil.copytree(world["data"] / "cropped_aligned" / "video002", blank)
    for path in blank.glob("*.jpg"):
        cv2.imwrite(str(path), np.full((56, 56, 3), 128, np.uint8))
    df = pd.read_parquet(world["manifest"])
    df.loc[2, "frames_dir"] = str(blank)
    cfg = _cfg(world, visual_input="frames")
    with caplog.at_level(logging.WARNING):
        summary = run_extraction(
            df, str(tmp_path / "s.zarr"), cfg, tracks={"video002"}, progress=False
        )
    assert summary.low_faces == [("video002", 0.0)]  # the summary table lists it
    lines = [r.getMessage() for r in caplog.records if "video002" in r.getMessage()]
    assert lines == [lines[0]] and "track video002: no face in any of 30 frames" in lines[0], lines
