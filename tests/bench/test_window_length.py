"""bench/window_length.py at a tiny size: every row fits, is scored both ways, and the table,
CSV and plot are written (on a small real store, not the rendered world)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from bench.window_length import LONG_RANGE_AUS, context_ceiling, density, row_config, run
from data_manifest.aus import AU_INDEX, N_AUS
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
        assert cfg.data.eval_window == 0 and cfg.model.name == "hga_agssm"
        assert cfg.loss.name == "bce" and cfg.recipe == "abaw10:+AG-SSM"
    ref = row_config("+HGA", 64, 512, ["model.d_state=4"])  # the frame-wise row takes no d_state
    assert ref.model.name == "hga_mlp" and not hasattr(ref.model, "d_state")


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


def test_density():
    x = np.array([0, 0, 1, 1, 0, 0], np.float64)
    np.testing.assert_array_equal(density(x, 1), x)
    np.testing.assert_allclose(density(x, 0), np.full(6, 1 / 3))
    np.testing.assert_allclose(density(x, 3), [0, 1 / 3, 2 / 3, 2 / 3, 1 / 3, 0])


def test_context_ceiling_rises_with_context(tmp_path):
    """An episode seen in 6-frame bursts every 30 frames: the frame alone finds the bursts,
    a window spanning a gap finds the episode."""
    n, tracks = 400, {}
    (tmp_path / "synth_truth").mkdir()
    for k in range(2):
        labels = np.zeros((n, N_AUS), np.int8)
        visible = np.zeros((n, N_AUS), np.float32)
        for a in LONG_RANGE_AUS:
            j = AU_INDEX[a]
            labels[100 + 20 * k : 300, j] = 1
            for s in range(100 + 20 * k, 300, 30):
                visible[s : s + 6, j] = 0.9
        np.savez(tmp_path / "synth_truth" / f"t{k}.npz", labels=labels, visible=visible)
        tracks[f"t{k}"] = {"split": "val"}
    (tmp_path / "synth_truth.json").write_text(json.dumps({"tracks": tracks}))
    ceiling = context_ceiling(tmp_path, [32, 64]).set_index("window")
    # the frame alone does no better than marking every frame positive (F1 2p / (1 + p) ~ 0.65)
    assert ceiling.loc[1, "f1"] < 0.7
    assert ceiling.loc[32, "f1"] > 0.9 and ceiling.loc[64, "f1"] > 0.9
    assert list(ceiling.index) == [1, 32, 64, 0]
