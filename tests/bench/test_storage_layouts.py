"""bench/storage_layouts.py's bookkeeping: which seeds it trains, and the table and verdict it
builds from scored runs (real run folders and store metadata, no training)."""

from __future__ import annotations

import json

import pytest

import bench.storage_layouts as sl


def fake_store(out, name, side):
    """A store folder holding only the patch array's metadata, as collect reads it."""
    meta = out / f"{name}.zarr" / "tracks" / "video000" / "visual" / "dinov2" / "patch"
    meta.mkdir(parents=True)
    (meta / "zarr.json").write_text(json.dumps({"shape": [200, side, side, 64]}))


def score(out, name, row, seed, f1):
    run = sl.run_dir(out, name, row, seed)
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"mean_f1": f1, "honest_mean_f1": f1 - 0.1}))


F1 = {  # (layout, row) -> F1 per seed
    ("fp16", "+HGA"): [0.40, 0.42, 0.44],
    ("fp16", "+AG-SSM"): [0.50, 0.50, 0.50],
    ("int8", "+HGA"): [0.41, 0.42, 0.43],
    ("int8", "+AG-SSM"): [0.50, 0.49, 0.51],
    ("int8-pool8", "+HGA"): [0.40, 0.41, 0.42],  # 0.976 of fp16: fails
    ("int8-pool8", "+AG-SSM"): [0.60, 0.60, 0.60],
    ("int8-pool4", "+HGA"): [0.30, 0.50],  # one seed short
    ("int8-pool4", "+AG-SSM"): [0.50, 0.50, 0.50],
}


@pytest.fixture
def scored(tmp_path):
    for name, _, pool in sl.LAYOUTS:
        fake_store(tmp_path, name, pool or 16)
    for (name, row), values in F1.items():
        for seed, f1 in enumerate(values):
            score(tmp_path, name, row, seed, f1)
    return tmp_path


def test_collect_means_spread_and_fraction_of_fp16(scored):
    table = sl.collect(scored, 3).set_index(["layout", "row"])
    assert len(table) == 8
    fp16 = table.loc[("fp16", "+HGA")]
    assert fp16["mean"] == pytest.approx(0.42) and fp16["sd"] == pytest.approx(0.02)
    assert fp16["honest_mean"] == pytest.approx(0.32)
    assert fp16["of_fp16"] == pytest.approx(1.0) and fp16["diff"] == pytest.approx(0.0)
    assert fp16[["se_diff", "se_paired"]].isna().all()
    pool8 = table.loc[("int8-pool8", "+HGA")]
    assert [pool8[f"f1_seed{k}"] for k in range(3)] == [0.40, 0.41, 0.42]
    assert pool8["of_fp16"] == pytest.approx(0.41 / 0.42)
    assert pool8["diff"] == pytest.approx(-0.01)
    assert pool8["se_diff"] == pytest.approx((0.01**2 / 3 + 0.02**2 / 3) ** 0.5)
    assert pool8["se_paired"] == pytest.approx(0.01 / 3**0.5)  # diffs 0, -0.01, -0.02
    pool4 = table.loc[("int8-pool4", "+HGA")]
    assert pool4["n_seeds"] == 2 and pool4["mean"] == pytest.approx(0.40)
    assert pool4["f1_seed2"] != pool4["f1_seed2"]  # NaN: not scored
    assert table.loc[("int8", "+HGA"), "bytes_per_frame"] == 197_632
    assert table.loc[("fp16", "+HGA"), "bytes_per_frame"] == 393_216
    assert table.loc[("int8-pool8", "+HGA"), "grid"] == "8x8"
    assert table.loc[("int8-pool4", "+HGA"), "bytes_per_frame"] == 12_352
    assert sl.collect(scored, 1)["n_seeds"].eq(1).all()  # only the seeds asked for


def test_verdict_names_the_smallest_layout_keeping_98_percent_on_every_row(scored):
    table = sl.collect(scored, 3)
    text = sl.verdict(table)
    # int8-pool4 keeps 0.952 on +HGA, int8-pool8 0.976: the full int8 grid is the smallest
    assert text.splitlines()[0].endswith(": int8")
    assert "int8-pool8: does not keep" in text and "int8: keeps" in text
    assert "+AG-SSM 1.200 of fp16 (diff +0.1000, pooled se 0.0000: beyond 2 se" in text
    hga = "+HGA 0.976 of fp16 (diff -0.0100, pooled se 0.0129: within 2 se, paired se 0.0058:"
    assert hga + " within 2 se)" in text
    lenient = sl.verdict(table, keep=0.95)
    assert lenient.splitlines()[0].endswith(": int8-pool4")


def test_verdict_without_fp16(tmp_path):
    fake_store(tmp_path, "int8", 16)
    score(tmp_path, "int8", "+HGA", 0, 0.4)
    assert sl.verdict(sl.collect(tmp_path, 1)).startswith("no fp16 runs")
    score(tmp_path, "fp16", "+HGA", 0, 0.5)
    fake_store(tmp_path, "fp16", 16)
    text = sl.verdict(sl.collect(tmp_path, 1))
    assert "+HGA 0.800 of fp16 (diff -0.1000, one seed, no spread)" in text
    assert text.splitlines()[0].endswith(": fp16")


def test_train_row_skips_only_scored_seeds(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(sl, "ablate", lambda *a, **k: calls.append((a, k)))
    store, manifest = tmp_path / "int8.zarr", tmp_path / "manifest.parquet"
    score(tmp_path, "int8", "+HGA", 0, 0.4)
    sl.train_row(tmp_path, "int8", store, manifest, "+HGA", 0, ["optim.epochs=2"])
    assert calls == []
    sl.train_row(tmp_path, "int8", store, manifest, "+HGA", 1, ["optim.epochs=2"])
    ((args, kwargs),) = calls
    assert args[:4] == (store, manifest, tmp_path / "ablation_int8", 2)
    assert "optim.epochs=2" in args[4] and kwargs == {"rows": ["+HGA"]}
