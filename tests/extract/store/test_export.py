"""Export to HDF5 / npy: the same numbers as StoreReader, the attributes a reader needs, one line
for each mistake or bad track, files for the team."""

from __future__ import annotations

import json
import os
import stat

import h5py
import numpy as np
import pytest

from extract.cli import main
from extract.store import StoreReader, TokenStorage
from extract.store.export import export_store, npy_name
from tests.extract.store.store_fixtures import AUD, ENC, register_all, small_writer, write_track

PATCH = f"visual/{ENC}/patch"


def _store(tmp_path, storage=TokenStorage(), tids=("a", "b"), n=21):
    url = str(tmp_path / "s.zarr")
    w = small_writer(url)
    register_all(w, storage)
    for i, tid in enumerate(tids):
        write_track(w, tid, n=n + i, seed=i, storage=storage)
    return url


def _h5_arrays(path) -> dict[tuple[str, str], np.ndarray]:
    out = {}
    with h5py.File(path, "r") as f:
        for tid, grp in f["tracks"].items():
            grp.visititems(
                lambda name, node, tid=tid: (
                    out.__setitem__((tid, name), node[()])
                    if isinstance(node, h5py.Dataset)
                    else None
                )
            )
    return out


def _npy_arrays(path) -> dict[tuple[str, str], np.ndarray]:
    doc = json.loads((path / "attributes.json").read_text())
    return {
        (tid, name): np.load(path / tid / npy_name(name))
        for tid, t in doc["tracks"].items()
        for name in t["arrays"]
    }


@pytest.mark.parametrize("fmt", ["h5", "npy"])
@pytest.mark.parametrize("kind", ["fp16", "int8"])
def test_round_trip_equals_reader(tmp_path, fmt, kind):
    url = _store(tmp_path, TokenStorage(kind))
    out = tmp_path / f"feat.{fmt}"
    report = export_store(url, str(out), fmt, frames_per_read=5)
    assert report.ok and report.tracks == ["a", "b"]
    got = _h5_arrays(out) if fmt == "h5" else _npy_arrays(out)
    reader = StoreReader(url)
    expected = {}
    for tid in reader.tracks():
        for name in reader.arrays(tid):
            expected[(tid, name)] = reader.read(tid, name, dequantize=False)
        if kind == "int8":
            expected[(tid, PATCH + "_scale")] = reader.read_scale(tid, PATCH)
    assert set(got) == set(expected)
    for key, values in expected.items():
        assert got[key].dtype == values.dtype, key
        np.testing.assert_array_equal(got[key], values, err_msg=str(key))
    if kind == "int8":  # what the attributes say is enough to get the reader's floats back
        q, s = got[("a", PATCH)], got[("a", PATCH + "_scale")]
        np.testing.assert_array_equal(q.astype(np.float32) * s[..., None], reader.read("a", PATCH))


def test_dequantize_and_array_selection(tmp_path):
    url = _store(tmp_path, TokenStorage("int8"))
    out = tmp_path / "feat.h5"
    report = export_store(url, str(out), arrays=[PATCH, "face"], dequantize=True)
    assert report.arrays == sorted(
        ["time", PATCH, "face/valid", "face/box", "face/landmarks", "face/align", "face/rois"]
    )
    reader = StoreReader(url)
    with h5py.File(out, "r") as f:
        ds = f["tracks/b"][PATCH]
        assert ds.dtype == np.float32 and "scale" not in ds.attrs
        np.testing.assert_array_equal(ds[()], reader.read("b", PATCH))
        assert f"audio/{AUD}" not in f["tracks/b"]
        assert PATCH + "_scale" not in f["tracks/b"]


def test_h5_attributes(tmp_path):
    url = _store(tmp_path, TokenStorage("int8"))
    out = tmp_path / "feat.h5"
    export_store(url, str(out))
    reader = StoreReader(url)
    entry = reader.track_attrs("a")["groups"][f"visual/{ENC}"]
    with h5py.File(out, "r") as f:
        assert f.attrs["store_fingerprint"] == reader.fingerprint
        assert json.loads(f.attrs["groups"]) == reader.groups
        assert json.loads(f.attrs["skipped"]) == {}
        assert f["tracks/a"].attrs["n_frames"] == 21 and f["tracks/a"].attrs["fps"] == 30.0
        ds = f["tracks/a"][PATCH]
        assert ds.attrs["fingerprint"] == entry["fingerprint"]
        assert ds.attrs["model"] == "tiny-dino" and ds.attrs["token_kind"] == "int8"
        assert ds.attrs["store_dtype"] == "int8"
        assert ds.attrs["scale"] == PATCH + "_scale"
        assert json.loads(ds.attrs["token_storage"])["kind"] == "int8"
        assert ds.chunks[0] == reader.array("a", PATCH).chunks[0]  # windows read few chunks
        assert ds.compression is None


def test_npy_attributes_and_gzip_is_h5_only(tmp_path):
    url = _store(tmp_path)
    out = tmp_path / "feat"
    export_store(url, str(out), "npy", tracks=["b"])
    doc = json.loads((out / "attributes.json").read_text())
    assert doc["store_fingerprint"] == StoreReader(url).fingerprint
    assert list(doc["tracks"]) == ["b"] and sorted(os.listdir(out)) == ["attributes.json", "b"]
    meta = doc["tracks"]["b"]["arrays"][f"audio/{AUD}"]
    assert meta["fields"]["model"] == "tiny-wav" and meta["dtype"] == "float16"
    assert doc["tracks"]["b"]["attrs"]["n_frames"] == 22
    gz = tmp_path / "gz.h5"
    export_store(url, str(gz), gzip=4)
    with h5py.File(gz, "r") as f:
        assert f["tracks/a/face/landmarks"].compression == "gzip"
    with pytest.raises(Exception, match="h5 only"):
        export_store(url, str(tmp_path / "x"), "npy", gzip=4)


def test_unknown_array_is_one_line_exit_2(tmp_path, capsys):
    url = _store(tmp_path)
    out = tmp_path / "feat.h5"
    code = main(["export", url, "--out", str(out), "--arrays", f"visual/{ENC}/clss"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and f"did you mean 'visual/{ENC}/cls'" in err
    assert not out.exists()
    code = main(["export", url, "--out", str(out), "--tracks", "aa,zz"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "unknown track 'aa'" in err


def test_existing_output_needs_overwrite(tmp_path, capsys):
    url = _store(tmp_path)
    out = tmp_path / "feat.h5"
    out.write_text("keep me")
    assert main(["export", url, "--out", str(out), "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_text() == "keep me"
    assert main(["export", url, "--out", str(out), "--no-progress", "--overwrite"]) == 0
    assert h5py.is_hdf5(out)
    assert main(["export", url, "--out", url, "--format", "npy", "--overwrite"]) == 2
    assert "the store itself" in capsys.readouterr().err and StoreReader(url).tracks()


@pytest.mark.parametrize("fmt", ["h5", "npy"])
def test_corrupt_chunk_skips_that_track_only(tmp_path, capsys, fmt):
    url = _store(tmp_path, tids=("a", "b", "c"))
    shard = next(
        p for p in (tmp_path / "s.zarr/tracks/b/face/landmarks/c").rglob("*") if p.is_file()
    )
    shard.write_bytes(b"\x00garbage" + shard.read_bytes()[8:])
    out = tmp_path / ("feat.h5" if fmt == "h5" else "feat")
    code = main(["export", url, "--out", str(out), "--format", fmt, "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1
    lines = [ln for ln in captured.err.splitlines() if "skipped track" in ln]
    assert len(lines) == 1 and "'b'" in lines[0] and "face/landmarks" in lines[0]
    assert "1 track(s) skipped" in captured.err and "2 tracks" in captured.err
    reader = StoreReader(url)
    if fmt == "h5":
        with h5py.File(out, "r") as f:
            assert sorted(f["tracks"]) == ["a", "c"]
            assert "b" in json.loads(f.attrs["skipped"])
            np.testing.assert_array_equal(f["tracks/c/time"][()], reader.read("c", "time"))
    else:
        assert sorted(os.listdir(out)) == ["a", "attributes.json", "c"]
        assert "b" in json.loads((out / "attributes.json").read_text())["skipped"]


@pytest.mark.parametrize("fmt", ["h5", "npy"])
def test_files_honour_umask(tmp_path, fmt):
    url = _store(tmp_path, tids=("a",))
    out = tmp_path / ("feat.h5" if fmt == "h5" else "feat")
    old = os.umask(0o027)
    try:
        export_store(url, str(out), fmt)
    finally:
        os.umask(old)
    paths = [out] if fmt == "h5" else [out, *out.rglob("*")]
    for p in paths:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == (0o750 if p.is_dir() else 0o640), (p, oct(mode))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
