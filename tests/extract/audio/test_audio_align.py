"""pool_to_frames: the vectorised rule against the plain loop, and the rule itself."""

from __future__ import annotations

import numpy as np
import pytest

from extract.audio_align import frame_intervals, pool_to_frames, pool_to_frames_reference


def _grid(n, hop, length, start=0.0):
    s = start + np.arange(n) * hop
    return s, s + length


@pytest.mark.parametrize("seed", range(8))
def test_fast_equals_loop_reference(seed):
    rng = np.random.default_rng(seed)
    n, d = int(rng.integers(1, 60)), 3
    hop = float(rng.choice([0.01, 0.02]))
    starts, ends = _grid(n, hop, hop * float(rng.choice([1.0, 1.25, 2.5])), rng.uniform(-0.1, 0.3))
    feats = rng.standard_normal((n, d)).astype(np.float32)
    if seed % 2:  # unsorted input is sorted inside
        perm = rng.permutation(n)
        feats, starts, ends = feats[perm], starts[perm], ends[perm]
    # irregular frames reaching before and after the audio, with a repeated time
    t = np.sort(rng.uniform(-0.3, n * hop + 0.3, size=int(rng.integers(1, 40))))
    if t.shape[0] > 3:
        t[2] = t[1]
    fast, cov_fast = pool_to_frames(feats, starts, ends, t)
    ref, cov_ref = pool_to_frames_reference(feats, starts, ends, t)
    np.testing.assert_array_equal(cov_fast, cov_ref)
    np.testing.assert_allclose(fast, ref, rtol=1e-5, atol=1e-6)


def test_overlap_weighted_mean():
    feats = np.array([[0.0], [10.0], [20.0]], np.float32)
    starts, ends = np.array([0.0, 0.1, 0.2]), np.array([0.1, 0.2, 0.3])
    pooled, covered = pool_to_frames(feats, starts, ends, np.array([0.05]), np.array([0.2]))
    assert covered.all()
    assert pooled[0, 0] == pytest.approx((0.05 * 0 + 0.1 * 10) / 0.15)


def test_uncovered_frames_nearest_within_one_hop_else_not_covered():
    feats = np.arange(5, dtype=np.float32)[:, None]  # (5, 1)
    starts, ends = _grid(5, 0.02, 0.02, start=1.0)  # audio spans [1.0, 1.1)
    times = np.array([0.0, 0.985, 1.01, 1.115, 1.5])
    ends_f = times + 0.001
    pooled, covered = pool_to_frames(feats, starts, ends, times, ends_f)
    np.testing.assert_array_equal(covered, [False, True, True, True, False])
    np.testing.assert_allclose(pooled[:, 0], [0, 0, 0, 4, 0])


def test_frame_intervals_last_frame_uses_median_duration():
    a, b = frame_intervals(np.array([0.0, 0.04, 0.08, 0.2]))
    np.testing.assert_allclose(b, [0.04, 0.08, 0.2, 0.24])
    _, b1 = frame_intervals(np.array([3.0]))
    assert b1[0] == pytest.approx(3.04)


def test_no_features_gives_uncovered_zeros():
    pooled, covered = pool_to_frames(np.zeros((0, 4)), np.zeros(0), np.zeros(0), np.arange(3.0))
    assert pooled.shape == (3, 4) and not covered.any() and not pooled.any()


def test_audio_modules_import_light():
    """The aligner, decoder and encoder modules import no torch / transformers / av at import."""
    import subprocess
    import sys

    code = (
        "import sys, extract.audio_align, extract.audio_decode, extract.encoders.logmel, "
        "extract.encoders.wavlm, extract.encoders.whisper; "
        "print(sorted(m for m in ('torch', 'transformers', 'av', 'soxr') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
