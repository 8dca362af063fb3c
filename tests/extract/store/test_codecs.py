"""Codec choice and the two codec pipelines: zarrs and zarr-python read identical arrays, and
through zarrs a missing chunk file or a flipped byte is still an error, never data."""

from __future__ import annotations

import numpy as np
import pytest

from extract.store import CorruptChunk, MissingChunk, StoreReader, TokenStorage
from extract.store.location import PIPELINE_ENV, choose_pipeline
from extract.store.writer import chunk_codecs, chunk_layout
from tests.extract.store.store_fixtures import (
    ENC,
    make_track,
    register_all,
    small_writer,
    write_track,
)

pytest.importorskip("zarrs")
PIPES = ("python", "zarrs")
PATCH = f"visual/{ENC}/patch"


def _store(tmp_path, monkeypatch, pipeline, storage=TokenStorage("int8")):
    monkeypatch.setenv(PIPELINE_ENV, pipeline)
    url = str(tmp_path / f"w-{pipeline}.zarr")
    w = small_writer(url)
    register_all(w, storage)
    write_track(w, "t0", n=37, seed=0, storage=storage)
    write_track(w, "t1", n=20, seed=1, storage=storage)
    return url


def _reader(url, monkeypatch, pipeline) -> StoreReader:
    monkeypatch.setenv(PIPELINE_ENV, pipeline)
    r = StoreReader(url)
    assert r.location.pipeline == pipeline
    return r


@pytest.mark.parametrize("written_by", PIPES)
def test_both_pipelines_read_identical_arrays(tmp_path, monkeypatch, written_by):
    url = _store(tmp_path, monkeypatch, written_by)
    readers = {p: _reader(url, monkeypatch, p) for p in PIPES}
    for tid in ("t0", "t1"):
        names = readers["python"].arrays(tid)
        assert names == readers["zarrs"].arrays(tid)
        for name in names:
            whole = [readers[p].read(tid, name, dequantize=False) for p in PIPES]
            assert whole[0].dtype == whole[1].dtype and np.array_equal(whole[0], whole[1]), name
            for a, b in ((3, 11), (0, 1), (5, 36), (19, 20)):  # windows across chunk edges
                got = readers["zarrs"].read(tid, name, a, b, dequantize=False)
                assert np.array_equal(got, whole[0][a:b]), name
        assert np.array_equal(
            readers["zarrs"].read_scale(tid, PATCH), readers["python"].read_scale(tid, PATCH)
        )
    assert readers["zarrs"].array("t0", PATCH).async_array.codec_pipeline.__class__.__name__ == (
        "ZarrsCodecPipeline"
    )


def _chunk_file(tmp_path, url, name, index=1):
    from pathlib import Path

    base = Path(url) / "tracks/t0" / name / "c"
    files = sorted(p for p in base.rglob("*") if p.is_file())
    return [p for p in files if p.relative_to(base).parts[0] == str(index)][0]


@pytest.mark.parametrize("pipeline", PIPES)
def test_missing_chunk_file_raises_through_either_pipeline(tmp_path, monkeypatch, pipeline):
    url = _store(tmp_path, monkeypatch, "zarrs")
    gone = _chunk_file(tmp_path, url, PATCH)
    gone.unlink()
    r = _reader(url, monkeypatch, pipeline)
    step = r.array("t0", PATCH).chunks[0]
    with pytest.raises(MissingChunk, match=str(gone)):
        r.read("t0", PATCH, step, step + 1)  # one frame inside the missing chunk
    with pytest.raises(MissingChunk):
        r.read("t0", PATCH)
    assert r.read("t0", PATCH, 0, step).shape[0] == step  # the chunks that are there still read


@pytest.mark.parametrize("pipeline", PIPES)
@pytest.mark.parametrize("name", [PATCH, "face/landmarks", "face/valid"])
def test_flipped_byte_raises_through_either_pipeline(tmp_path, monkeypatch, pipeline, name):
    url = _store(tmp_path, monkeypatch, "zarrs")
    path = _chunk_file(tmp_path, url, name, index=0)
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x10
    path.write_bytes(bytes(data))
    r = _reader(url, monkeypatch, pipeline)
    step = r.array("t0", name).chunks[0]
    # a window inside the chunk: zarrs alone would decode part of it without its checksum
    with pytest.raises(CorruptChunk, match="does not decode") as err:
        r.read("t0", name, min(1, step - 1), min(2, step), dequantize=False)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_sharded_store_reads_whole_shards_through_zarrs(tmp_path, monkeypatch):
    """Stores written before chunks became files of their own are sharded; zarrs reads them
    shard by shard (checked) and agrees with the python pipeline."""
    import zarr
    from zarr.codecs import Crc32cCodec

    from extract.store.integrity import CorruptChunk as Corrupt
    from extract.store.integrity import read_checked

    store = zarr.storage.LocalStore(str(tmp_path / "sh.zarr"))
    x = np.arange(64 * 3, dtype=np.float32).reshape(64, 3)
    with zarr.config.set({"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"}):
        arr = zarr.create_array(store, name="tracks/t/a", shape=x.shape, dtype="float32",
                                chunks=(4, 3), shards=(16, 3), compressors=(Crc32cCodec(),))  # fmt: skip
        arr[:] = x
        exists = lambda key: (tmp_path / "sh.zarr" / key).exists()  # noqa: E731
        assert np.array_equal(read_checked(arr, 5, 37, "t", "a", str, exists), x[5:37])
        f = tmp_path / "sh.zarr/tracks/t/a/c/1/0"
        data = bytearray(f.read_bytes())
        data[5] ^= 1
        f.write_bytes(bytes(data))
        with pytest.raises(Corrupt, match="c/1/0"):
            read_checked(arr, 17, 18, "t", "a", str, exists)


def test_codec_rule():
    names = lambda dt: [type(c).__name__ for c in chunk_codecs(np.dtype(dt))]  # noqa: E731
    assert names("bool") == ["BloscCodec", "Crc32cCodec"]
    assert names("float32") == ["BloscCodec", "Crc32cCodec"]
    assert names("float64") == ["BloscCodec", "Crc32cCodec"]
    assert names("float16") == ["Crc32cCodec"]
    assert names("int8") == ["Crc32cCodec"]
    scale = [type(c).__name__ for c in chunk_codecs(np.dtype("float32"), "visual/d/patch_scale")]
    assert scale == ["Crc32cCodec"]  # read with every token window: plain, read directly


def test_chunk_layout_sized_for_windows():
    # DINOv2-B/14 tokens: 16-frame chunks whatever the layout (a 64-frame window reads 5)
    assert chunk_layout((16, 16, 768), 2, 10_000)[0] == 16
    assert chunk_layout((8, 8, 768), 1, 10_000)[0] == 16
    assert chunk_layout((768,), 2, 10_000)[0] == 128  # CLS: 256 KiB chunks
    assert chunk_layout((), 1, 10_000) == (10_000, 10_000)  # masks: one chunk per track
    chunk, write = chunk_layout((8, 8, 768), 1, 10_000)
    assert write % chunk == 0 and write > chunk  # whole chunks written at once


def test_pipeline_knob(monkeypatch):
    monkeypatch.setenv(PIPELINE_ENV, "python")
    assert choose_pipeline(local=True) == "python"
    monkeypatch.setenv(PIPELINE_ENV, "zarrs")
    assert choose_pipeline(local=True) == "zarrs"
    assert choose_pipeline(local=False) == "python"  # zarrs opens local files only
    monkeypatch.delenv(PIPELINE_ENV)
    assert choose_pipeline(local=True) == "zarrs"  # installed: the default
    monkeypatch.setenv(PIPELINE_ENV, "rust")
    with pytest.raises(ValueError, match=PIPELINE_ENV):
        choose_pipeline(local=True)


def test_pool_matches_reference_after_store(tmp_path, monkeypatch):
    url = _store(tmp_path, monkeypatch, "zarrs", TokenStorage("fp16", pool=2))
    got = _reader(url, monkeypatch, "python").read("t0", PATCH)
    x = make_track(37, 0)[PATCH]
    ref = x.reshape(37, 2, 2, 2, 2, -1).mean(axis=(2, 4))
    assert np.allclose(got, ref, atol=1e-2, rtol=1e-3)


def test_chunks_of_zeros_are_written_through_zarrs(tmp_path, monkeypatch):
    """zarrs alone leaves out a chunk that is all fill value; every chunk file must exist (the
    writer proves it at commit) and read back as zeros."""
    monkeypatch.setenv(PIPELINE_ENV, "zarrs")
    url = str(tmp_path / "z.zarr")
    w = small_writer(url)
    storage = TokenStorage("int8")
    w.register_group(f"visual/{ENC}", storage.fingerprint_fields())
    n = 23
    with w.open_track("t0", n_frames=n) as tw:
        tw.create_array("time", (n,), "float64")
        tw.write("time", 0, np.arange(n) / 30.0)
        tw.create_array(f"visual/{ENC}/valid", (n,), "bool")
        tw.write(f"visual/{ENC}/valid", 0, np.zeros(n, bool))  # no face anywhere
        tw.create_array(PATCH, (n, 4, 4, 8), "float16", storage=storage)
        x = make_track(n)[PATCH]
        x[:16] = 0  # the first chunks without a face: zeros, scale 0
        tw.write(PATCH, 0, x)
        tw.finish_group(f"visual/{ENC}")
    r = _reader(url, monkeypatch, "zarrs")
    assert not r.read("t0", f"visual/{ENC}/valid").any()
    assert not r.read("t0", PATCH, 0, 16).any() and r.read("t0", PATCH, 16, n).any()
