"""bench/window_length.py at a tiny size: every row fits, is scored both ways, and the table,
CSV and plot are written (on a small real store, not the rendered world)."""

from __future__ import annotations

import json

import pandas as pd

from bench.window_length import row_config, run
from tests.train.store_factory import make_dataset

TINY = [
    "model.d_model=16",
    "model.heads=2",
    "model.d_state=4",
    "model.n_layers=1",
    "model.expand=1",
    "model.hidden=32",
    "optim.epochs=1",
]


def test_row_config_keeps_frames_per_step():
    for window, batch in ((32, 16), (64, 8), (512, 1)):
        cfg = row_config("+AG-SSM", window, 512, [])
        assert (cfg.data.window, cfg.data.stride, cfg.batch_size()) == (window, window // 2, batch)
        assert cfg.data.eval_window == 0 and cfg.model["name"] == "hga_agssm"
        assert cfg.loss["name"] == "bce" and cfg.recipe == "abaw10:+AG-SSM"
    ref = row_config("+HGA", 64, 512, ["model.d_state=4"])  # the frame-wise row takes no d_state
    assert ref.model["name"] == "hga_mlp" and "d_state" not in ref.model


def test_bench_runs_at_tiny_size(tmp_path):
    store, manifest = make_dataset(tmp_path, n_train=2, n_val=2, n_test=0, frames=40)
    dest = tmp_path / "results"
    # windows longer than the tracks (64 > 40..54 frames) train on padded windows
    table = run(store, manifest, tmp_path / "runs", [8, 64], 64, TINY, "cmd", "world", dest)
    assert table["row"].tolist() == ["+AG-SSM", "+AG-SSM", "+HGA"]
    assert table["window"].tolist() == [8, 64, 64]
    assert table["batch"].tolist() == [8, 1, 1]
    for col in ("f1_whole", "f1_eval64", "long_range_f1_whole", "last_f1_eval64"):
        assert table[col].between(0, 1).all(), col
    csv = pd.read_csv(dest / "window_length.csv")
    assert len(csv) == 3
    text = (dest / "window_length.md").read_text()
    assert "| +AG-SSM | 8 | 64 | 8 |" in text and "window_length.png" in text
    assert "| all-positive |" in text
    assert (dest / "window_length.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "runs" / "agssm_w8" / "window_length.json").read_text())
    assert saved["f1_whole"] == table["f1_whole"].iloc[0]
    # a second run reuses the finished rows (no fit: it returns at once with the same table)
    again = run(store, manifest, tmp_path / "runs", [8, 64], 64, TINY, "cmd", "world", dest)
    pd.testing.assert_frame_equal(again.reset_index(drop=True), table.reset_index(drop=True))
