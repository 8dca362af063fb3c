"""The opt-in long-range AU processes of the synthetic generator (`SynthConfig.long_range`)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from data_manifest.aus import AU_INDEX, AUS
from data_manifest.cli import main
from data_manifest.synth import LongRangeConfig, SynthConfig, generate_synthetic
from data_manifest.synth.au_process import face_activity, sample_utterances
from data_manifest.synth.long_range import long_range_au

# Digest of everything the generator decides with numpy (annotation files, test list,
# synth_truth.json, every array of synth_truth/*.npz) for SynthConfig(tracks=4, frames=40,
# seed=3), taken from the generator before the long-range option existed. Video and JPEG bytes
# are left out (they also depend on the codec libraries); with this venv they were identical too.
DEFAULT_DIGEST = "a3fe788033af5bff5448c0db7a1756ff16fe069dfa65ec7703237811ea43d1d4"


def label_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.suffix in (".mp4", ".jpg"):
            continue
        h.update(p.relative_to(root).as_posix().encode())
        if p.suffix == ".npz":
            with np.load(p) as z:
                for k in sorted(z.files):
                    h.update(k.encode())
                    h.update(np.ascontiguousarray(z[k]).tobytes())
        else:
            h.update(p.read_bytes())
    return h.hexdigest()


def test_default_output_is_unchanged(synth_small):
    root, truth = synth_small  # SynthConfig(tracks=4, frames=40, seed=3): long_range off
    assert label_digest(root) == DEFAULT_DIGEST
    assert "long_range" not in truth["params"]
    assert all("long_range" not in info for info in truth["tracks"].values())
    with np.load(root / "synth_truth" / "video000.npz") as z:
        assert "visible" not in z.files and "long_range_state" not in z.files


def test_other_aus_keep_their_events():
    """The long-range AUs draw from their own stream: every other AU is as without them."""
    cfg = SynthConfig(long_range=LongRangeConfig())
    n = 500
    plain_rng, lr_rng = np.random.default_rng(1), np.random.default_rng(1)
    utts = sample_utterances(plain_rng, cfg, n, 1)
    assert sample_utterances(lr_rng, cfg, n, 1) == utts
    plain = face_activity(plain_rng, cfg, n, utts, 0)
    slow = {au: long_range_au(np.random.default_rng(9), cfg.long_range, n, 25.0) for au in ("AU4",)}
    lr = face_activity(lr_rng, cfg, n, utts, 0, slow)
    j = AU_INDEX["AU4"]
    others = [i for i in range(len(AUS)) if i != j]
    np.testing.assert_array_equal(lr.labels[:, others], plain.labels[:, others])
    np.testing.assert_array_equal(lr.visible[:, others], lr.intensity[:, others])
    np.testing.assert_array_equal(lr.labels[:, j], slow["AU4"].label >= cfg.label_threshold)
    np.testing.assert_array_equal(lr.visible[:, j], slow["AU4"].visible)


def test_episodes_are_long_and_seen_in_bursts():
    lr, fps, n = LongRangeConfig(), 25.0, 3000
    rng = np.random.default_rng(0)
    aus = [long_range_au(rng, lr, n, fps) for _ in range(40)]
    levels = {a.level for a in aus}
    assert levels == {"high", "low"}
    for a in aus:
        for s, e in a.episodes:
            # whole episodes last episode_s (those cut by the track's ends may be shorter)
            if 0 < s and e < n:
                assert lr.episode_s[0] * fps - 1 <= e - s <= lr.episode_s[1] * fps + 1
        # the label is the state (save the 3-frame ramps at each end)
        label = a.label >= 0.4
        assert (label <= a.state).all()
        assert (a.state & ~label).sum() <= 4 * len(a.episodes)
        # stray bursts lie outside episodes
        for s, e in a.stray:
            assert not a.state[s:e].any()
    state = np.concatenate([a.state for a in aus])
    visible = np.concatenate([a.visible for a in aus]) >= 0.4
    # most episode frames show nothing; a single frame cannot tell an episode from its absence
    assert 0.08 < visible[state].mean() < 0.35
    assert visible[~state].mean() < 0.06
    # the subject level sets how much of the track is in episodes
    high = np.mean([a.state.mean() for a in aus if a.level == "high"])
    low = np.mean([a.state.mean() for a in aus if a.level == "low"])
    assert high > 3 * low


def test_generate_records_the_long_range_truth(tmp_path):
    cfg = SynthConfig(tracks=3, frames=60, seed=2, crop_size=48, long_range=LongRangeConfig())
    truth = generate_synthetic(tmp_path, cfg)
    on_disk = json.loads((tmp_path / "synth_truth.json").read_text())
    assert on_disk["params"]["long_range"]["aus"] == list(cfg.long_range.aus)
    for tid, info in on_disk["tracks"].items():
        assert set(info["long_range"]) == set(cfg.long_range.aus)
        with np.load(tmp_path / "synth_truth" / f"{tid}.npz") as z:
            state, labels, visible = z["long_range_state"], z["labels"], z["visible"]
        for au, rec in info["long_range"].items():
            j = AU_INDEX[au]
            assert rec["level"] in ("high", "low")
            assert rec["episode_rate"] == pytest.approx(state[:, j].mean())
            assert rec["positive_rate"] == pytest.approx(labels[:, j].mean())
            for s, e in rec["episodes"]:
                assert state[s:e, j].all()
        plain = [AU_INDEX[a] for a in AUS if a not in cfg.long_range.aus]
        assert not state[:, plain].any()
        assert visible.shape == labels.shape
    assert truth["tracks"].keys() == on_disk["tracks"].keys()
    with pytest.raises(ValueError, match="AU99"):
        generate_synthetic(
            tmp_path / "bad", SynthConfig(tracks=1, frames=4, long_range=LongRangeConfig(("AU99",)))
        )


def test_cli_long_range_flag(tmp_path, capsys):
    out = tmp_path / "lr"
    assert main(["synth", "--out", str(out), "--tracks", "1", "--frames", "30",
                 "--crop-size", "48", "--long-range", "--no-progress"]) == 0  # fmt: skip
    truth = json.loads((out / "synth_truth.json").read_text())
    assert "long_range" in truth["tracks"]["video000"]
