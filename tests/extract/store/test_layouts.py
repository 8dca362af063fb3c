"""Every patch-token layout round-trips within its stated error, and a transcoded store holds
the same numbers as a store written in that layout directly."""

from __future__ import annotations

import numpy as np
import pytest

from extract.store import StoreReader, TokenStorage
from extract.store.transcode import transcode_store
from tests.extract.store.store_fixtures import (
    ENC,
    make_track,
    register_all,
    small_writer,
    write_track,
)

PATCH = f"visual/{ENC}/patch"
LAYOUTS = [
    TokenStorage("fp16"),
    TokenStorage("int8"),
    TokenStorage("int8", pool=2),
    TokenStorage("fp16", pool=2),
    TokenStorage("int8", pool=1),
]


def numpy_pool(x: np.ndarray, side: int) -> np.ndarray:
    """Reference mean-pool written out cell by cell: (n, h, w, D) -> (n, side, side, D)."""
    n, h, w, d = x.shape
    fh, fw = h // side, w // side
    out = np.zeros((n, side, side, d), np.float64)
    for i in range(side):
        for j in range(side):
            out[:, i, j] = (
                x[:, i * fh : (i + 1) * fh, j * fw : (j + 1) * fw]
                .astype(np.float64)
                .mean(axis=(1, 2))
            )
    return out


def bound(storage: TokenStorage, ref: np.ndarray, scale: np.ndarray | None) -> np.ndarray:
    """Largest error each value may have: half a quantisation step (int8), fp16 rounding else."""
    if storage.kind == "int8":
        return scale[..., None] / 2 + 1e-6
    return np.abs(ref) * 2.0**-11 + 1e-7


@pytest.mark.parametrize("storage", LAYOUTS, ids=lambda s: f"{s.kind}-pool{s.pool}")
def test_layout_round_trip_within_stated_error(tmp_path, storage):
    w = small_writer(str(tmp_path / "s.zarr"))
    register_all(w, storage)
    write_track(w, "t1", n=21, storage=storage)
    r = StoreReader(str(tmp_path / "s.zarr"))
    x = make_track(21)[PATCH]  # (21, 4, 4, 8) float32
    ref = numpy_pool(x, storage.pool) if storage.pool else x.astype(np.float64)
    got = r.read("t1", PATCH)
    assert got.shape == ref.shape
    scale = r.read_scale("t1", PATCH) if storage.kind == "int8" else None
    assert np.all(np.abs(got - ref) <= bound(storage, ref, scale))
    if storage.kind == "int8":  # the scale is max|x| / 127 of each (pooled) token
        assert np.allclose(scale, np.abs(ref).max(-1) / 127, rtol=1e-5)


@pytest.mark.parametrize("target", [TokenStorage("int8"), TokenStorage("int8", pool=2)])
def test_transcoded_store_equals_direct_write(tmp_path, target):
    src, dst = str(tmp_path / "src.zarr"), str(tmp_path / "dst.zarr")
    w = small_writer(src)
    register_all(w)
    write_track(w, "t1", n=23, seed=1)
    write_track(w, "t2", n=9, seed=2)
    # what a writer in `target` layout stores for the fp16 values the source holds
    stored = StoreReader(src).read("t1", PATCH)
    assert transcode_store(src, dst, target) == ["t1", "t2"]
    r = StoreReader(dst)
    assert r.tracks() == ["t1", "t2"]
    enc, scale = target.encode(stored)
    assert np.array_equal(r.read("t1", PATCH, dequantize=False), enc)
    assert np.array_equal(r.read_scale("t1", PATCH), scale)
    for name in r.arrays("t1"):
        if name != PATCH:
            assert np.array_equal(r.read("t1", name), StoreReader(src).read("t1", name)), name
    fields = r.groups[f"visual/{ENC}"]["fields"]
    assert fields["token_kind"] == target.kind and fields["token_pool"] == target.pool
    r.require_groups([PATCH, "face/valid"])
    assert transcode_store(src, dst, target) == []  # complete tracks are kept, not rewritten


@pytest.mark.parametrize(
    "storage",
    [TokenStorage("int8"), TokenStorage("int8", pool=8), TokenStorage("fp16", pool=8)],
    ids=lambda s: f"{s.kind}-pool{s.pool}",
)
def test_device_encoding_matches_host_reference(storage):
    torch = pytest.importorskip("torch")
    from extract.store.quantize import encode_torch

    rng = np.random.default_rng(3)
    x = (rng.normal(size=(6, 16, 16, 48)) * rng.uniform(0.1, 5, (6, 16, 16, 1))).astype(np.float32)
    x[0, 0, 0] = 0  # an all-zero token: scale 0, values 0
    q_ref, s_ref = storage.encode(x)
    q, s = encode_torch(storage, torch.from_numpy(x))
    q = q.numpy()
    assert q.dtype == q_ref.dtype and q.shape == q_ref.shape
    if storage.kind == "fp16":
        assert np.allclose(q.astype(np.float32), q_ref.astype(np.float32), rtol=2e-3, atol=1e-6)
        return
    s = s.numpy()
    assert np.allclose(s, s_ref, rtol=1e-6, atol=0)
    diff = np.abs(q.astype(np.int16) - q_ref.astype(np.int16))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.999  # pooling sums in another order
    if storage.pool is None:
        assert np.array_equal(q, q_ref)  # same arithmetic without pooling: bit-identical
    deq = q.astype(np.float32) * s[..., None]
    ref = numpy_pool(x, storage.pool) if storage.pool else x
    assert np.all(np.abs(deq - ref) <= s[..., None] * 1.5 + 1e-6)


def test_encoder_quantises_on_device_and_writer_stores_it(tmp_path):
    pytest.importorskip("torch")
    from extract.encoders import load_visual_encoder
    from extract.store.quantize import EncodedTokens
    from extract.tiny_models import write_tiny_models

    models = write_tiny_models(tmp_path / "models", ("dinov2",))
    storage = TokenStorage("int8", pool=2)
    plain = load_visual_encoder("dinov2", models["dinov2"], device="cpu", batch_size=3)
    enc = load_visual_encoder(
        "dinov2", models["dinov2"], device="cpu", batch_size=3, token_storage=storage
    )
    assert enc.outputs == plain.outputs  # (h, w, D) of the tokens before encoding
    crops = np.random.default_rng(0).integers(0, 255, (7, 56, 56, 3), dtype=np.uint8)
    ref = plain.encode(crops)["patch"]  # (7, 4, 4, D) float32
    got = enc.encode(crops)["patch"]
    assert isinstance(got, EncodedTokens) and got.shape == ref.shape
    assert got.values.dtype == np.int8 and got.values.shape == (7, 2, 2, ref.shape[-1])
    q_ref, s_ref = storage.encode(ref)
    assert np.allclose(got.scale, s_ref, rtol=1e-5)
    assert np.abs(got.values.astype(int) - q_ref).max() <= 1
    # the writer keeps encoded tokens as they are; scattered into a longer track with zeros
    w = small_writer(str(tmp_path / "s.zarr"))
    w.register_group(f"visual/{ENC}", storage.fingerprint_fields())
    full = got.scatter(np.array([0, 1, 2, 4, 5, 6, 8]), 9)
    with w.open_track("t", n_frames=9) as tw:
        tw.create_array("time", (9,), "float64")
        tw.write("time", 0, np.arange(9.0))
        tw.create_array(PATCH, full.shape, "float16", storage=storage)
        tw.write(PATCH, 0, EncodedTokens.concat([full]))
        tw.finish_group(f"visual/{ENC}")
    r = StoreReader(str(tmp_path / "s.zarr"))
    assert np.array_equal(r.read("t", PATCH, dequantize=False), full.values)
    assert np.array_equal(r.read("t", PATCH)[3], np.zeros_like(r.read("t", PATCH)[3]))
    with pytest.raises(ValueError, match="encoded as"):
        w2 = small_writer(str(tmp_path / "s2.zarr"))
        w2.register_group(f"visual/{ENC}", {})
        with w2.open_track("t", n_frames=9) as tw:
            tw.create_array(PATCH, full.shape, "float16", storage=TokenStorage("int8"))
            tw.write(PATCH, 0, full)


def test_grid_no_larger_than_the_pool_is_kept():
    torch = pytest.importorskip("torch")
    from extract.store.quantize import encode_torch

    storage = TokenStorage("int8", pool=8)
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 6)).astype(np.float32)
    assert storage.stored_shape(x.shape) == x.shape
    q, s = storage.encode(x)
    assert q.shape == x.shape and s.shape == (2, 4, 4)
    assert encode_torch(storage, torch.from_numpy(x))[0].shape == x.shape
    assert storage.stored_shape((2, 16, 16, 6)) == (2, 8, 8, 6)
    with pytest.raises(ValueError, match="cannot be pooled"):
        storage.stored_shape((2, 12, 12, 6))  # larger and not a multiple: refused, not guessed


def test_job_encodes_tokens_on_the_device_and_keeps_them_through_retries(tmp_path, monkeypatch):
    """The job's encode path: the model cache hands the storage to the encoder, frames without a
    face stay zeros, and an out-of-memory split joins encoded halves."""
    pytest.importorskip("torch")
    from extract.job import stages
    from extract.job.config import ExtractConfig
    from extract.job.models import ModelCache
    from extract.store.quantize import EncodedTokens
    from extract.tiny_models import write_tiny_models

    models = write_tiny_models(tmp_path / "models", ("dinov2",))
    cfg = ExtractConfig(
        visual={"dinov2": models["dinov2"]}, device="cpu", token_dtype="int8", patch_pool=2
    )
    enc = ModelCache(cfg).visual("dinov2")
    assert enc.token_storage == TokenStorage("int8", pool=2)
    crops = np.random.default_rng(1).integers(0, 255, (6, 56, 56, 3), dtype=np.uint8)
    valid = np.array([True, False, True, True, False, True])
    out = stages.encode_visual(enc, crops, valid)["patch"]
    assert isinstance(out, EncodedTokens) and len(out) == 6
    assert not out.values[~valid].any() and not out.scale[~valid].any()
    direct = enc.encode(crops[valid])["patch"]
    assert np.array_equal(out.values[valid], direct.values)

    calls = {"n": 0}
    real = enc.encode

    def oom_once(batch, **kw):  # the first, whole batch runs out of memory
        calls["n"] += 1
        if calls["n"] == 1:
            raise type("OutOfMemoryError", (RuntimeError,), {})("CUDA out of memory")
        return real(batch, **kw)

    monkeypatch.setattr("torch.cuda.empty_cache", lambda: None)
    split = stages.encode_with_oom_retry(oom_once, crops[valid])["patch"]
    assert isinstance(split, EncodedTokens) and np.array_equal(split.values, direct.values)
