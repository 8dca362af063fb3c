"""The plan is a pure function: manifest rows + store metadata + fingerprints -> what to do."""

from __future__ import annotations

import shutil

import pandas as pd

from data_manifest.source_signature import signature_change, source_signature
from extract.job.plan import StoreState, plan
from extract.job.shard import Shard

FP = {"face": "f1", "visual/dinov2": "d1", "audio": "a1", "audio/logmel": "l1"}
SIG = {"version": "content-v1", "video": {"size": 10, "sample": "abc"}}


def _sign(row):
    return dict(row.get("sig") or SIG)


def _manifest(*rows) -> pd.DataFrame:
    return pd.DataFrame([{"status": "ok", "error": "", "n_frames": 30, **r} for r in rows])


def _entry(fp):
    return {"group_fingerprint": fp, "fingerprint": fp + "-track", "fields": {}}


def _complete(groups, sig=SIG):
    return {
        "n_frames": 31,
        "source_signature": sig,
        "groups": {g: _entry(fp) for g, fp in groups.items()},
    }


def test_new_resume_complete_and_added_groups():
    state = StoreState(
        complete={
            "done": _complete(FP),
            "partial": _complete({"face": "f1", "visual/dinov2": "d1"}),
        },
        unfinished={"cut"},
    )
    m = _manifest(
        {"track_id": "new"}, {"track_id": "cut"}, {"track_id": "done"}, {"track_id": "partial"}
    )
    out = plan(m, state, FP, Shard(0, 1), signature=_sign)
    by = {p.track_id: p for p in out.tracks}
    assert by["new"].reason == "new" and by["new"].groups == list(FP)
    assert by["cut"].reason == "resume"
    assert by["done"].reason == "skip" and out.complete == [by["done"]]
    assert by["partial"].reason == "add" and by["partial"].groups == ["audio", "audio/logmel"]
    assert by["partial"].n_frames == 31 and by["partial"].replace == []


def test_overwrite_names_only_the_groups_of_the_command_line():
    state = StoreState(complete={"t": _complete(FP)})
    wanted = {"audio": "a1", "audio/logmel": "l1"}
    (p,) = plan(
        _manifest({"track_id": "t"}), state, wanted, Shard(0, 1), overwrite=True, signature=_sign
    ).tracks
    assert p.reason == "overwrite" and p.reopens
    assert p.groups == ["audio", "audio/logmel"] and p.replace == ["audio", "audio/logmel"]
    assert p.dropped == []


def test_changed_sources_stop_or_rewrite_whole_naming_the_dropped_groups():
    state = StoreState(complete={"t": _complete(FP)})
    other = {"version": "content-v1", "video": {"size": 11, "sample": "abc"}}
    m = _manifest({"track_id": "t", "sig": other})
    stop = plan(m, state, {"audio": "a1"}, Shard(0, 1), signature=_sign)
    assert stop.todo == [] and [p.track_id for p in stop.changed] == ["t"]
    assert "video: size 10 -> 11" in stop.changed[0].change
    (p,) = plan(m, state, {"audio": "a1"}, Shard(0, 1), overwrite=True, signature=_sign).tracks
    assert p.reason == "changed" and not p.reopens
    assert p.dropped == ["audio/logmel", "face", "visual/dinov2"]


def test_rows_not_planned_are_all_accounted_for():
    m = _manifest(
        {"track_id": "ok1"},
        {"track_id": "gone", "status": "missing_video", "error": "no file"},
        {"track_id": "bad id"},
    )
    out = plan(
        m, StoreState(), FP, Shard(0, 1), only={"ok1", "gone", "bad id", "typo"}, signature=_sign
    )
    assert [p.track_id for p in out.tracks] == ["ok1"]
    assert [(r.row_number, r.track_id, r.why) for r in out.skipped_rows] == [
        (2, "gone", "status missing_video: no file")
    ]
    assert [(r.row_number, r.track_id) for r in out.bad_ids] == [(3, "bad id")]
    assert out.unknown == ["typo"]


def test_shards_split_the_rows_without_loss():
    m = _manifest(*({"track_id": f"v{i}"} for i in range(20)))
    parts = [plan(m, StoreState(), FP, Shard(i, 3), signature=_sign).tracks for i in range(3)]
    ids = sorted(p.track_id for part in parts for p in part)
    assert ids == sorted(f"v{i}" for i in range(20))


def test_content_signature_ignores_place_and_time_but_sees_content(tmp_path):
    import os

    video = tmp_path / "a" / "v.mp4"
    frames = tmp_path / "a" / "frames"
    frames.mkdir(parents=True)
    video.write_bytes(os.urandom(300_000))
    for i in range(1, 8):
        (frames / f"{i:05d}.jpg").write_bytes(os.urandom(500))
    row = {"video": str(video), "frames_dir": str(frames)}
    sig = source_signature(row)
    moved = tmp_path / "b"
    shutil.copytree(tmp_path / "a", moved)
    os.utime(moved / "v.mp4", (1, 1))
    again = source_signature({"video": str(moved / "v.mp4"), "frames_dir": str(moved / "frames")})
    assert signature_change(sig, again) == ""
    data = bytearray(video.read_bytes())
    data[150_000] ^= 0xFF  # one byte in the middle block
    video.write_bytes(bytes(data))
    assert "video: sample" in signature_change(sig, source_signature(row))
    video.write_bytes(bytes(data[:-1]))
    assert "size 300000 -> 299999" in signature_change(sig, source_signature(row))
    (frames / "00008.jpg").write_bytes(b"x")
    assert "frames 7 -> 8" in signature_change(sig, source_signature(row))


def test_signatures_from_before_content_signing_compare_by_size():
    old = {"video": {"path": "/old/place/v.mp4", "size": 10, "mtime": 5}}
    assert signature_change(old, SIG) == ""
    assert "10 -> 12" in signature_change(old, {**SIG, "video": {"size": 12, "sample": "x"}})
