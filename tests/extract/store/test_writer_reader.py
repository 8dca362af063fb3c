"""Writer and reader: round trips of every array kind, windows, visibility, overwrite, adding groups."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from extract.store import (
    FingerprintMismatch,
    StoreReader,
    StoreVersionError,
    StoreWriter,
    TokenStorage,
    TrackExists,
    TrackLeased,
)
from extract.store.quantize import dequantize_int8, pool_grid, quantize_int8
from tests.extract.store.store_fixtures import (
    AUD,
    ENC,
    group_fields,
    make_track,
    register_all,
    small_writer,
    write_track,
)

PATCH = f"visual/{ENC}/patch"


@pytest.mark.parametrize(
    "storage",
    [
        TokenStorage("fp16"),
        TokenStorage("int8"),
        TokenStorage("int8", pool=2),
        TokenStorage("fp16", pool=1),
    ],
)
def test_round_trip_every_array_kind(tmp_path, storage):
    url = str(tmp_path / "s.zarr")
    w = small_writer(url)
    register_all(w, storage)
    data = write_track(w, "vid1_left", n=23, storage=storage, step=5)
    r = StoreReader(url)
    assert r.tracks() == ["vid1_left"]
    assert set(r.arrays("vid1_left")) == set(data)
    assert r.n_frames("vid1_left") == 23
    assert r.track_attrs("vid1_left")["fps"] == 30.0
    for name, values in data.items():
        got = r.read("vid1_left", name)
        if name != PATCH:
            assert got.dtype == values.dtype and np.array_equal(got, values), name
            continue
        stored, scale = storage.encode(values)
        assert r.shape("vid1_left", name) == stored.shape
        assert np.array_equal(r.read("vid1_left", name, dequantize=False), stored)
        assert np.allclose(got, storage.decode(stored, scale))
        ref = pool_grid(values, storage.pool) if storage.pool else values
        tol = (
            np.abs(ref).max(axis=-1, keepdims=True) / 254 + 1e-6
            if storage.kind == "int8"
            else 2e-3 * (1 + np.abs(ref))
        )
        assert (np.abs(got - ref) <= tol).all()
    # arrays span several shard files with these tiny sizes; any window matches
    assert len(os.listdir(tmp_path / "s.zarr/tracks/vid1_left/face/landmarks/c")) > 1
    window = r.read_window("vid1_left", ["time", "face/valid"], 4, 9)
    assert np.array_equal(window["face/valid"], data["face/valid"][4:9])
    full = r.read("vid1_left", "face/landmarks")
    for a, b in [(0, 1), (3, 17), (22, 23), (10, 100)]:
        assert np.array_equal(r.read("vid1_left", "face/landmarks", a, b), full[a:b])


def test_int8_error_bound_and_pooling():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 4, 4, 32)).astype(np.float32) * rng.uniform(
        0.01, 100, (5, 4, 4, 1)
    ).astype(np.float32)
    x[0, 0, 0] = 0.0  # an all-zero token keeps scale 0 and decodes to zeros
    q, s = quantize_int8(x)
    assert q.dtype == np.int8 and s.shape == (5, 4, 4) and s.dtype == np.float32
    err = np.abs(dequantize_int8(q, s) - x)
    assert (err <= s[..., None] / 2 * (1 + 1e-5) + 1e-12).all()
    assert (err.max(axis=-1) <= np.abs(x).max(axis=-1) / 254 * (1 + 1e-5) + 1e-12).all()
    assert np.array_equal(dequantize_int8(q, s)[0, 0, 0], np.zeros(32))
    pooled = pool_grid(x, 2)  # (5, 2, 2, 32)
    assert pooled.shape == (5, 2, 2, 32)
    assert np.allclose(pooled[1, 1, 0], x[1, 2:4, 0:2].mean(axis=(0, 1)))
    grid16 = rng.normal(size=(2, 16, 16, 3)).astype(np.float32)
    assert TokenStorage("int8", pool=8).stored_shape(grid16.shape) == (2, 8, 8, 3)
    assert np.allclose(pool_grid(grid16, 8)[0, 3, 5], grid16[0, 6:8, 10:12].mean(axis=(0, 1)))
    with pytest.raises(ValueError, match="cannot be pooled"):
        TokenStorage("fp16", pool=3).stored_shape((1, 16, 16, 3))
    with pytest.raises(ValueError, match="not one of"):
        TokenStorage("bf16")


def test_incomplete_track_invisible_and_restartable(tmp_path):
    url = str(tmp_path / "s.zarr")
    w = small_writer(url)
    register_all(w)
    tw = w.open_track("t1", n_frames=10)
    tw.create_array("time", (10,), "float64")
    tw.write("time", 0, np.arange(5.0))
    r = StoreReader(url)
    assert r.tracks() == [] and r.incomplete_tracks() == ["t1"]
    with pytest.raises(KeyError, match="not a complete track"):
        r.read("t1", "time")
    with pytest.raises(ValueError, match="5 of 10 frames"):
        tw.commit()
    with pytest.raises(ValueError, match="expected start 5"):
        tw.write("time", 7, np.arange(3.0))
    with pytest.raises(TrackLeased, match="being written by pid"):
        w.open_track("t1", n_frames=10)  # the first writer still holds the track
    tw.lease.release()  # as if its process had died: the unfinished copy stays behind
    r.refresh()
    assert r.incomplete_tracks() == ["t1"]
    write_track(w, "t1", n=10)  # a new writer replaces the unfinished copy
    r.refresh()
    assert r.tracks() == ["t1"] and r.incomplete_tracks() == []


def test_overwrite_is_explicit(tmp_path):
    url = str(tmp_path / "s.zarr")
    w = small_writer(url)
    register_all(w)
    write_track(w, "t1", n=12, seed=0)
    with pytest.raises(TrackExists, match="overwrite=True"):
        w.open_track("t1", n_frames=12)
    data = write_track(w, "t1", n=15, seed=5, overwrite=True)
    r = StoreReader(url)
    assert r.n_frames("t1") == 15
    assert np.array_equal(r.read("t1", "face/box"), data["face/box"])


def _files(root):
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            p = os.path.join(d, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, root)] = f.read()
    return out


def test_add_group_leaves_other_arrays_byte_identical(tmp_path):
    url = str(tmp_path / "s.zarr")
    w = small_writer(url)
    register_all(w, skip=(f"audio/{AUD}",))
    write_track(w, "t1", n=20, groups=("face", f"visual/{ENC}", "audio"))
    track_dir = tmp_path / "s.zarr/tracks/t1"
    before = _files(track_dir)
    r = StoreReader(url)
    assert f"audio/{AUD}" not in r.arrays("t1")

    w.register_group(f"audio/{AUD}", group_fields()[f"audio/{AUD}"])
    feats = make_track(20, seed=3)[f"audio/{AUD}"]
    tw = w.open_track("t1", add_groups=True)
    assert tw.has_group("face") and not tw.has_group(f"audio/{AUD}")
    with pytest.raises(ValueError, match="already exists"):
        tw.create_array("face/box", (20, 4), "float32")
    tw.create_array(f"audio/{AUD}", feats.shape, "float16")
    tw.write(f"audio/{AUD}", 0, feats)
    # not yet finished: readers of the complete track do not see the new array
    assert f"audio/{AUD}" not in StoreReader(url).arrays("t1")
    tw.finish_group(f"audio/{AUD}")
    tw.commit()

    after = _files(track_dir)
    changed = {k for k in before if before[k] != after.get(k)}
    assert changed == {"zarr.json"}  # only the track's own attrs (its groups) changed
    assert all(k.startswith("audio/") for k in set(after) - set(before))
    r = StoreReader(url)
    assert np.array_equal(r.read("t1", f"audio/{AUD}"), feats)
    r.require_groups([f"audio/{AUD}", "face/rois"])


def test_track_writes_never_touch_root_metadata(tmp_path):
    url = str(tmp_path / "s.zarr")
    w = small_writer(url)
    register_all(w)
    root = (tmp_path / "s.zarr/zarr.json").read_bytes()
    tracks = (tmp_path / "s.zarr/tracks/zarr.json").read_bytes()
    write_track(w, "a", n=9)
    write_track(w, "b", n=9, overwrite=True)
    assert (tmp_path / "s.zarr/zarr.json").read_bytes() == root
    assert (tmp_path / "s.zarr/tracks/zarr.json").read_bytes() == tracks
    register_all(StoreWriter(url))  # registering the same groups again writes nothing
    assert (tmp_path / "s.zarr/zarr.json").read_bytes() == root


def test_schema_version_refused(tmp_path):
    url = str(tmp_path / "s.zarr")
    small_writer(url)
    meta_path = tmp_path / "s.zarr/zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["schema_version"] = 999
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(StoreVersionError, match="schema version 999.*reads version 2"):
        StoreReader(url)
    meta["attributes"]["schema_version"] = 1  # written before checksums and leases
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(StoreVersionError, match="version 2 added chunk checksums.*Re-extract"):
        StoreReader(url)
    with pytest.raises(StoreVersionError, match="schema version 1;"):
        StoreWriter(url)
    del meta["attributes"]["schema_version"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(StoreVersionError, match="not an auwild feature store"):
        StoreReader(url)


def test_fingerprints_checked_with_field_names(tmp_path):
    url = str(tmp_path / "s.zarr")
    w = small_writer(url)
    register_all(w)
    fields = dict(group_fields()[f"visual/{ENC}"], revision="r2")
    with pytest.raises(FingerprintMismatch, match=r"revision: store='r1', new='r2'") as exc:
        w.register_group(f"visual/{ENC}", fields)
    assert exc.value.fields == ["revision"]
    write_track(w, "t1", n=8)
    # a track whose group fingerprint differs from the root's is refused by require_groups
    meta_path = tmp_path / "s.zarr/tracks/t1/zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["groups"]["face"] = {
        "fingerprint": "0000",
        "fields": dict(group_fields()["face"], crop_size=224),
    }
    meta_path.write_text(json.dumps(meta))
    r = StoreReader(url)
    r.require_groups([f"visual/{ENC}/patch"])  # other groups are not checked
    with pytest.raises(FingerprintMismatch, match="crop_size: store=112, track t1=224") as exc:
        r.require_groups(["face/rois", f"visual/{ENC}/cls"])
    assert exc.value.fields == ["crop_size"]


def test_cache_and_remote_style_reads_agree(tmp_path):
    url = str(tmp_path / "s.zarr")
    w = small_writer(url)
    register_all(w, TokenStorage("int8"))
    write_track(w, "t1", n=30, storage=TokenStorage("int8"))
    plain, cached = StoreReader(url), StoreReader("file://" + url, cache=True)
    small = StoreReader(url, cache=1000)  # a byte budget smaller than some arrays
    for name in plain.arrays("t1"):
        for a, b in [(0, 30), (4, 9), (29, 30)]:
            ref = plain.read("t1", name, a, b)
            assert np.array_equal(cached.read("t1", name, a, b), ref)
            assert np.array_equal(small.read("t1", name, a, b), ref)
    assert np.array_equal(cached.read_scale("t1", PATCH, 2, 5), plain.read_scale("t1", PATCH, 2, 5))


def _read_in_child(reader, queue):
    queue.put(reader.read("t1", "face/box", 2, 5).tolist())


def test_reader_usable_after_fork(tmp_path):
    """Data-loader workers fork after the reader has been used in the parent."""
    import multiprocessing

    url = str(tmp_path / "s.zarr")
    w = small_writer(url)
    register_all(w)
    data = write_track(w, "t1", n=10)
    r = StoreReader(url)
    r.read("t1", "face/box")  # the parent has opened arrays (and zarr's I/O thread) already
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_read_in_child, args=(r, q))
    p.start()
    got = q.get(timeout=60)
    p.join(60)
    assert p.exitcode == 0
    assert np.array_equal(np.array(got, dtype=np.float32), data["face/box"][2:5])
