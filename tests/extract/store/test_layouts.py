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
