"""Per-track fingerprint fields: what happened for a track (aligned crops or full frames) is kept
in its group entry; readers and merge refuse to mix tracks that differ, naming the field."""

from __future__ import annotations

import numpy as np
import pytest

from extract.store import FingerprintMismatch, StoreNotFound, StoreReader, group_fingerprint
from extract.store.merge import merge_stores
from tests.extract.store.store_fixtures import (
    DTYPES,
    group_fields,
    make_track,
    register_all,
    small_writer,
)

FACE = ("face/valid", "face/box", "face/landmarks", "face/align", "face/rois")


def _write(w, tid, aligned: bool, n=11, seed=0):
    data = make_track(n, seed)
    with w.open_track(tid, n_frames=n) as tw:
        for name in ("time", *FACE):
            tw.create_array(name, data[name].shape, DTYPES[name])
            tw.write(name, 0, data[name])
        tw.finish_group("face", track_fields={"aligned_input": aligned, "detector": "whole-image"})
    return data


def _store(path, aligned_by_track):
    w = small_writer(str(path))
    register_all(w)
    for i, (tid, aligned) in enumerate(aligned_by_track.items()):
        _write(w, tid, aligned, seed=i)
    return str(path)


def test_entry_keeps_group_and_track_fingerprints(tmp_path):
    url = _store(tmp_path / "s.zarr", {"a": True, "b": False})
    r = StoreReader(url)
    ea, eb = (r.track_attrs(t)["groups"]["face"] for t in ("a", "b"))
    root = r.groups["face"]["fingerprint"]
    assert group_fingerprint(ea) == group_fingerprint(eb) == root
    assert ea["fingerprint"] != eb["fingerprint"] != root
    assert ea["track_fields"] == {"aligned_input": True, "detector": "whole-image"}
    assert sorted(ea["arrays"]) == sorted(FACE)
    assert ea["arrays"]["face/landmarks"] == {"shape": [11, 68, 2], "dtype": "float32"}
    # "already done" compares the group fingerprint, so per-track fields never force a redo
    w = small_writer(url)
    tw = w.open_track("a", add_groups=True)
    assert tw.has_group("face") and w.group_done(ea, "face")
    tw.abort()


def test_require_groups_refuses_mixed_tracks_naming_the_field(tmp_path):
    url = _store(tmp_path / "s.zarr", {"a": True, "b": False, "c": True})
    r = StoreReader(url)
    with pytest.raises(FingerprintMismatch, match="track.aligned_input") as err:
        r.require_groups(["face/valid"])
    assert err.value.fields == ["track.aligned_input"]
    assert r.require_groups(["face/valid"], tracks=["a", "c"]) == {
        "face": r.groups["face"]["fingerprint"]
    }


def test_merge_refuses_stores_from_frames_and_from_crops(tmp_path):
    crops = _store(tmp_path / "crops.zarr", {"a": True})
    frames = _store(tmp_path / "frames.zarr", {"b": False})
    assert StoreReader(crops).groups == StoreReader(frames).groups  # the root cannot tell
    out = str(tmp_path / "out.zarr")
    with pytest.raises(FingerprintMismatch, match="track.aligned_input") as err:
        merge_stores([crops, frames], out)
    assert err.value.fields == ["track.aligned_input"]
    assert "crops.zarr track a" in str(err.value) and "frames.zarr track b" in str(err.value)
    with pytest.raises(StoreNotFound):
        StoreReader(out)  # nothing written
    same = _store(tmp_path / "crops2.zarr", {"c": True})
    assert merge_stores([crops, same], out).copied == ["a", "c"]
    with pytest.raises(FingerprintMismatch, match="track.aligned_input"):
        merge_stores([frames], out)  # the output's own tracks count too


def test_tracks_without_track_fields_agree_with_each_other(tmp_path):
    w = small_writer(str(tmp_path / "s.zarr"))
    register_all(w)
    for tid in ("a", "b"):
        data = make_track(7)
        with w.open_track(tid, n_frames=7) as tw:
            for name in ("time", *FACE):
                tw.create_array(name, data[name].shape, DTYPES[name])
                tw.write(name, 0, data[name])
            tw.finish_group("face")
    r = StoreReader(str(tmp_path / "s.zarr"))
    assert r.require_groups(["face"]) == {"face": r.groups["face"]["fingerprint"]}
    entry = r.track_attrs("a")["groups"]["face"]
    assert entry["fingerprint"] == entry["group_fingerprint"] == r.groups["face"]["fingerprint"]
    assert "track_fields" not in entry
    assert sorted(group_fields()) == sorted(r.groups)
    assert np.array_equal(r.read("a", "face/valid"), make_track(7)["face/valid"])
