"""verify, merge, inspect and consolidate, through the library and the command line."""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import pytest

from data_manifest.cli_support import add_common_options, run_cli
from extract.store import FingerprintMismatch, StoreReader, TokenStorage
from extract.store import commands as store_commands
from extract.store.consolidate import consolidate_store
from extract.store.inspect import inspect_store
from extract.store.merge import MergeConflict, merge_stores
from extract.store.verify import verify_store
from tests.extract.store.store_fixtures import ENC, register_all, small_writer, write_track


def _cli(argv) -> int:
    parser = argparse.ArgumentParser(prog="auwild-extract")
    sub = parser.add_subparsers(dest="command", required=True)
    store_commands.register(sub, add_common_options)
    return run_cli(parser, argv)


def _store(path, tids, storage=TokenStorage(), seed=0, n=21):
    w = small_writer(str(path))
    register_all(w, storage)
    for i, tid in enumerate(tids):
        write_track(w, tid, n=n, seed=seed + i, storage=storage)
    return str(path)


def test_truncated_chunk_fails_verify_naming_track(tmp_path, capsys):
    url = _store(tmp_path / "s.zarr", ["good", "bad"])
    assert verify_store(url).ok
    shard_dir = tmp_path / "s.zarr/tracks/bad/face/landmarks/c"
    shard = shard_dir / sorted(os.listdir(shard_dir), key=int)[-1] / "0" / "0"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    report = verify_store(url)
    assert not report.ok
    assert len(report.problems) == 1
    assert "track 'bad' array 'face/landmarks'" in report.problems[0]
    assert "unreadable" in report.problems[0]
    assert _cli(["verify", url]) == 1
    assert "track 'bad' array 'face/landmarks'" in capsys.readouterr().err


def test_verify_finds_missing_shard_nonfinite_and_time_order(tmp_path):
    url = _store(tmp_path / "s.zarr", ["a", "b", "c"])
    import zarr

    missing = tmp_path / "s.zarr/tracks/a/face/box/c/0/0"
    missing.unlink()
    g = zarr.open_group(str(tmp_path / "s.zarr/tracks/b"), mode="r+", use_consolidated=False)
    g["face/rois"][5, 0, 0] = np.nan
    t = g["time"][:]
    t[9] = t[8]
    zarr.open_group(str(tmp_path / "s.zarr/tracks/c"), mode="r+", use_consolidated=False)["time"][
        :
    ] = t
    problems = "\n".join(verify_store(url).problems)
    assert "track 'a' array 'face/box': chunk file missing [" in problems
    assert "s.zarr/tracks/a/face/box/c/0/0]" in problems
    assert "track 'b' array 'face/rois': non-finite values at frame 5" in problems
    assert "track 'c' array 'time': time not increasing at frame 9" in problems


def test_merge_combines_and_refuses_differing_fingerprints(tmp_path):
    a = _store(tmp_path / "a.zarr", ["a1", "a2"], seed=0)
    b = _store(tmp_path / "b.zarr", ["b1"], seed=7)
    out = str(tmp_path / "c.zarr")
    assert _cli(["merge", a, b, "--out", out]) == 0
    r = StoreReader(out)
    assert r.tracks() == ["a1", "a2", "b1"]
    for src, tid in [(a, "a1"), (b, "b1")]:
        for name in r.arrays(tid):
            assert np.array_equal(r.read(tid, name), StoreReader(src).read(tid, name))
    assert verify_store(out).ok
    assert merge_stores([a, b], out).skipped == ["a1", "a2", "b1"]  # running again changes nothing

    other = _store(tmp_path / "d.zarr", ["d1"], storage=TokenStorage("int8"))
    with pytest.raises(FingerprintMismatch, match="token_kind") as exc:
        merge_stores([a, other], str(tmp_path / "e.zarr"))
    assert exc.value.fields == ["token_kind"]
    assert not (tmp_path / "e.zarr").exists()  # checked before anything was written
    assert _cli(["merge", a, other, "--out", str(tmp_path / "e.zarr")]) == 2
    with pytest.raises(MergeConflict, match="'a1' is complete in both"):
        merge_stores([a, a], str(tmp_path / "f.zarr"))


def test_inspect_reports_bytes_per_frame(tmp_path, capsys):
    url = _store(tmp_path / "s.zarr", ["t1", "t2"], storage=TokenStorage("int8", pool=2), n=16)
    w = small_writer(url)
    tw = w.open_track("half", n_frames=4)
    tw.create_array("time", (4,), "float64")
    info = inspect_store(url)
    assert info["tracks"] == 2 and info["frames"] == 32
    assert info["incomplete_tracks"] == ["half"]
    assert info["bytes"] > 0 and info["bytes_per_frame"] == pytest.approx(
        info["bytes"] / 32, abs=0.01
    )
    patch = info["arrays"][f"visual/{ENC}/patch"]
    assert patch["frame_shape"] == [2, 2, 8] and patch["dtype"] == "int8"
    assert patch["token_storage"]["pool"] == 2 and patch["tracks"] == 2
    assert sum(a["bytes_per_frame"] for a in info["arrays"].values()) == pytest.approx(
        info["bytes_per_frame"], abs=0.1
    )
    r = StoreReader(url)
    want = {t: round(float(r.read(t, "face/valid").mean()), 4) for t in ("t1", "t2")}
    assert info["face_rate"] == want and 0 < want["t1"] < 1
    assert _cli(["inspect", url, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("tracks", "frames", "bytes_per_frame", "fingerprint", "arrays", "models"):
        assert key in out
    assert out["face_rate"] == want
    assert _cli(["inspect", url]) == 0
    text = capsys.readouterr().out
    assert "bytes/frame" in text and "face rate" in text
    assert f"t1 {' ' * 22}{want['t1']:.3f}" in text
    assert _cli(["inspect", str(tmp_path / "nothing.zarr")]) == 2
    assert "no auwild store" in capsys.readouterr().err


def test_consolidate_is_repeatable_and_new_tracks_stay_visible(tmp_path):
    url = _store(tmp_path / "s.zarr", ["t1"])
    assert _cli(["consolidate", url]) == 0
    root = json.loads((tmp_path / "s.zarr/zarr.json").read_text())
    assert "tracks/t1/face/box" in root["consolidated_metadata"]["metadata"]
    r = StoreReader(url)
    assert r.tracks() == ["t1"] and "face/box" in r.arrays("t1")
    w = small_writer(url)
    write_track(w, "t2", n=9)  # written after consolidation
    r = StoreReader(url)
    assert r.tracks() == ["t1", "t2"]
    assert r.read("t2", "face/box").shape == (9, 4)
    assert consolidate_store(url) == consolidate_store(url)
    assert verify_store(url).ok


def test_through_extract_cli(tmp_path, monkeypatch, capsys):
    """`auwild-extract inspect` reaches these commands even before other command modules exist."""
    import extract.cli

    monkeypatch.setattr(extract.cli, "COMMAND_MODULES", ("extract.store.commands",))
    url = _store(tmp_path / "s.zarr", ["t1"])
    assert extract.cli.main(["inspect", url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tracks"] == 1
    assert extract.cli.main(["verify", url]) == 0
