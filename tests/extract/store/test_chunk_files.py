"""The direct chunk-file read agrees with zarr-python, byte for byte and error for error."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from extract.store import CorruptChunk, MissingChunk, StoreReader, TokenStorage
from extract.store.chunk_files import DIRECT_ENV, crc_extend, plan_chunk_files
from extract.store.location import PIPELINE_ENV
from tests.extract.store.store_fixtures import ENC, register_all, small_writer, write_track

PATCH = f"visual/{ENC}/patch"


def _readers(url, monkeypatch):
    """(direct reader, reference reader: zarr-python pipeline, no direct read)."""
    monkeypatch.setenv(PIPELINE_ENV, "python")
    ref = StoreReader(url, direct=False)
    monkeypatch.delenv(PIPELINE_ENV)
    return StoreReader(url), ref


def _windows(rng, n, count=25):
    """Random windows plus the edges: whole array, first and last frame, empty, past the end."""
    out = [(0, n), (0, 1), (n - 1, n), (3, 3), (n - 2, n + 5)]
    for _ in range(count):
        a = int(rng.integers(0, n))
        out.append((a, int(rng.integers(a, n + 1))))
    return out


@pytest.mark.parametrize("kind", ["int8", "fp16", "int8, Blosc scales"])
def test_store_windows_agree_with_zarr_python(tmp_path, monkeypatch, kind):
    url = str(tmp_path / "s.zarr")
    storage = TokenStorage(kind.split(",")[0])
    if "Blosc" in kind:  # stores written before token scales were kept plain
        import extract.store.writer as writer_module

        codecs = writer_module.chunk_codecs
        monkeypatch.setattr(writer_module, "chunk_codecs", lambda dtype, name="": codecs(dtype))
    w = small_writer(url)
    register_all(w, storage)
    write_track(w, "t1", n=37, storage=storage)  # patch chunks of 2 frames: last one short
    direct, ref = _readers(url, monkeypatch)
    planned = [name for name in direct.arrays("t1") if direct.chunk_files("t1", name)]
    assert PATCH in planned and f"visual/{ENC}/cls" in planned
    assert direct.chunk_files("t1", "time") is None  # Blosc-compressed: read by zarr
    if kind == "int8":  # the scales are plain too: read directly with the tokens
        assert direct.chunk_files("t1", PATCH + "_scale") is not None
    if "Blosc" in kind:
        assert direct.chunk_files("t1", PATCH + "_scale") is None
    rng = np.random.default_rng(1)
    for a, b in _windows(rng, 37):
        for name in direct.arrays("t1"):
            x = direct.read("t1", name, a, b, dequantize=False)
            y = ref.read("t1", name, a, b, dequantize=False)
            assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), (name, a, b)
        assert np.array_equal(direct.read("t1", PATCH, a, b), ref.read("t1", PATCH, a, b))
    cached = StoreReader(url, cache=True)
    assert np.array_equal(cached.read("t1", PATCH, 5, 30), ref.read("t1", PATCH, 5, 30))


@pytest.mark.parametrize(
    "dtype,frame,chunk,sep",
    [
        ("int8", (3, 4), 5, "/"),
        ("float16", (2, 3, 4), 4, "/"),
        ("bool", (7,), 16, "/"),
        ("float32", (), 3, "."),
        ("float64", (2,), 1, "/"),
    ],
)
def test_plain_zarr_arrays_of_every_dtype_agree(tmp_path, dtype, frame, chunk, sep):
    import zarr
    from zarr.codecs import BytesCodec, Crc32cCodec

    from extract.store.location import PIPELINES

    n = 23
    rng = np.random.default_rng(2)
    values = (rng.normal(size=(n, *frame)) * 50).astype(dtype)
    with zarr.config.set({"codec_pipeline.path": PIPELINES["python"]}):
        arr = zarr.create_array(
            zarr.storage.LocalStore(str(tmp_path)), name="a", shape=values.shape, dtype=dtype,
            chunks=(chunk, *frame), serializer=BytesCodec(), compressors=(Crc32cCodec(),),
            chunk_key_encoding={"name": "default", "separator": sep}, fill_value=7,
            config={"write_empty_chunks": True},
        )  # fmt: skip
        arr[:] = values
        plan = plan_chunk_files(str(tmp_path / "a"), arr.metadata.to_dict())
        assert plan is not None and plan.chunk == chunk
        for a, b in _windows(rng, n):
            assert np.array_equal(plan.read(a, b), arr[a : min(b, n)]), (a, b)


def test_compressed_and_sharded_arrays_are_left_to_zarr(tmp_path):
    import zarr
    from zarr.codecs import BloscCodec, Crc32cCodec

    store = zarr.storage.LocalStore(str(tmp_path))
    blosc = zarr.create_array(
        store, name="b", shape=(8, 4), dtype="int8", chunks=(2, 4),
        compressors=(BloscCodec(), Crc32cCodec()),
    )  # fmt: skip
    sharded = zarr.create_array(
        store, name="s", shape=(8, 4), dtype="int8", chunks=(2, 4), shards=(4, 4),
        compressors=(Crc32cCodec(),),
    )  # fmt: skip
    no_crc = zarr.create_array(
        store, name="n", shape=(8, 4), dtype="int8", chunks=(2, 4), compressors=()
    )
    split = zarr.create_array(
        store, name="g", shape=(8, 4), dtype="int8", chunks=(2, 2), compressors=(Crc32cCodec(),)
    )
    for arr in (blosc, sharded, no_crc, split):
        assert plan_chunk_files(str(tmp_path / arr.path), arr.metadata.to_dict()) is None


def test_the_environment_turns_direct_reads_off(tmp_path, monkeypatch):
    url = str(tmp_path / "s.zarr")
    w = small_writer(url)
    register_all(w)
    write_track(w, "t1", n=9)
    monkeypatch.setenv(DIRECT_ENV, "0")
    assert StoreReader(url).chunk_files("t1", PATCH) is None
    monkeypatch.delenv(DIRECT_ENV)
    assert StoreReader(url).chunk_files("t1", PATCH) is not None


def _int8_store(tmp_path, monkeypatch):
    """(direct reader, reference reader) of a store with one int8 track "t1" of 21 frames."""
    url = str(tmp_path / "s.zarr")
    storage = TokenStorage("int8")
    w = small_writer(url)
    register_all(w, storage)
    write_track(w, "t1", n=21, storage=storage)
    return _readers(url, monkeypatch)


def _flip_byte(path: str, at: int = 5) -> bytes:
    """Flip one bit of byte `at` in place; returns the byte as it was."""
    with open(path, "r+b") as f:
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0x10]))
    return byte


def _damaged_store(tmp_path, monkeypatch, how):
    direct, ref = _int8_store(tmp_path, monkeypatch)
    path = direct.chunk_files("t1", PATCH).path(3)  # frames 6..8
    if how == "missing":
        os.remove(path)
    elif how == "flipped":
        _flip_byte(path)
    else:  # cut short
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) - 3)
    return direct, ref, path


@pytest.mark.parametrize(
    "how,error", [("missing", MissingChunk), ("flipped", CorruptChunk), ("short", CorruptChunk)]
)
def test_damaged_chunks_raise_the_same_errors(tmp_path, monkeypatch, how, error):
    direct, ref, path = _damaged_store(tmp_path, monkeypatch, how)
    key = path[len(str(tmp_path / "s.zarr")) + 1 :]
    for reader in (direct, ref):
        for a, b in ((7, 8), (0, 21), (5, 12)):  # inside the chunk, whole array, across edges
            with pytest.raises(error) as info:
                reader.read("t1", PATCH, a, b, dequantize=False)
            line = str(info.value)
            assert "\n" not in line and "'t1'" in line and PATCH in line and key in line
    assert np.array_equal(  # the chunks around it still read
        direct.read("t1", PATCH, 0, 6, dequantize=False),
        ref.read("t1", PATCH, 0, 6, dequantize=False),
    )


def test_missing_chunk_is_an_error_whatever_the_fill_value(tmp_path):
    import zarr
    from zarr.codecs import Crc32cCodec

    arr = zarr.create_array(
        zarr.storage.LocalStore(str(tmp_path)), name="a", shape=(10, 3), dtype="float16",
        chunks=(4, 3), compressors=(Crc32cCodec(),), fill_value=0,
        config={"write_empty_chunks": True},
    )  # fmt: skip
    arr[:] = np.ones((10, 3), np.float16)
    plan = plan_chunk_files(str(tmp_path / "a"), arr.metadata.to_dict())
    os.remove(plan.path(1))
    with pytest.raises(MissingChunk, match="c/1/0"):
        plan.read(2, 9, "t", "a")
    assert np.array_equal(plan.read(0, 4), np.ones((4, 3), np.float16))


def test_crc_matches_zarrs_checksum_layout():
    import google_crc32c

    data = np.random.default_rng(3).integers(0, 256, 1000, dtype=np.uint8)
    whole = google_crc32c.value(data)
    assert crc_extend(crc_extend(0, data[:333]), data[333:]) == whole


def test_a_checked_chunk_is_read_again_without_its_checksum_until_it_changes(tmp_path, monkeypatch):
    """The second window over a chunk reads only its frames; a file changed since it was checked
    (in place, truncated, replaced) is checked again, so damage is still an error."""
    from extract.store.chunk_files import CHECKED, EVERY_READ_ENV

    direct, ref = _int8_store(tmp_path, monkeypatch)
    CHECKED.clear()
    direct.read("t1", PATCH, 0, 21, dequantize=False)
    assert not CHECKED._seen  # files written just now are checked on every read until settled
    monkeypatch.setattr(CHECKED, "now", lambda: time.time() + 10)  # ten seconds later
    calls = []
    monkeypatch.setattr(
        "extract.store.chunk_files.crc_extend",
        lambda crc, data: calls.append(len(data)) or crc_extend(crc, data),
    )
    want = ref.read("t1", PATCH, dequantize=False)
    rng = np.random.default_rng(5)
    windows = _windows(rng, 21)
    for a, b in windows:  # first pass: each chunk checked once, on the first window over it
        assert np.array_equal(direct.read("t1", PATCH, a, b, dequantize=False), want[a:b])
    checked = len(calls)
    assert checked and all(n > 0 for n in calls)
    for a, b in windows:  # second pass: the same bytes, no checksum computed
        assert np.array_equal(direct.read("t1", PATCH, a, b, dequantize=False), want[a:b])
    assert len(calls) == checked
    monkeypatch.setenv(EVERY_READ_ENV, "1")  # every read checked, as zarr does
    direct.read("t1", PATCH, 7, 8, dequantize=False)
    assert len(calls) > checked
    monkeypatch.delenv(EVERY_READ_ENV)

    path = direct.chunk_files("t1", PATCH).path(3)  # frames 6..8, checked above
    st = os.stat(path)
    time.sleep(0.05)  # past the file-time tick of the write: the changes below get a later ctime
    byte = _flip_byte(path)  # in place, mtime set back below: ctime still moves
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(CorruptChunk, match="checksum"):
        direct.read("t1", PATCH, 7, 8, dequantize=False)
    with open(path, "r+b") as f:  # mended in place: checked again and trusted again
        f.seek(5)
        f.write(byte)
    assert np.array_equal(direct.read("t1", PATCH, 6, 9, dequantize=False), want[6:9])
    blob = open(path, "rb").read()
    time.sleep(0.05)
    os.remove(path)  # replaced by a damaged copy under the same name: a new file
    with open(path, "wb") as f:
        f.write(blob[:5] + bytes([blob[5] ^ 1]) + blob[6:])
    with pytest.raises(CorruptChunk, match="checksum"):
        direct.read("t1", PATCH, 6, 9, dequantize=False)
    with open(path, "r+b") as f:  # truncated
        f.truncate(len(blob) - 3)
    with pytest.raises(CorruptChunk, match="bytes, expected"):
        direct.read("t1", PATCH, 6, 9, dequantize=False)
