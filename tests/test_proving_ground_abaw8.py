"""The ABAW8 proving ground (bench/proving_ground_abaw8.py) as a slow test: the ConvNeXt +
Whisper system learns on the synthetic AU world, every ablation row is filled, and each claim
the benchmark asserts (ASSERTED) holds, on seed 0 with the benchmark's data and model (16
tracks x 240 frames, SYNTH_OVERRIDES) trained for 15 epochs instead of 30, so that it fits in
about six minutes on two quiet cores (bench/results/proving_ground_abaw8.md has the 30-epoch
figures).
"""

from __future__ import annotations

import pytest

from bench.proving_ground_abaw8 import ASSERTED, ROWS, run, to_markdown

TEST_OVERRIDES = ("optim.epochs=15",)


@pytest.mark.slow
def test_abaw8_learns_and_the_asserted_parts_help(tmp_path):
    result = run(tmp_path / "pg8", tracks=16, frames=240, seeds=1, seed=0, overrides=TEST_OVERRIDES)
    print(to_markdown(result, "tests/test_proving_ground_abaw8.py"))
    rows = result["table"].set_index("row")
    assert tuple(rows.index) == ROWS
    assert rows.notna().all().all()
    assert list(result["subsets"].index) == list(ROWS)
    verdicts = {claim: (ours, ref, verdict) for claim, ours, ref, verdict in result["checks"]}
    assert set(ASSERTED) <= set(verdicts)
    for claim, margin in ASSERTED.items():
        ours, ref, verdict = verdicts[claim]
        assert ours >= ref + margin, (claim, ours, ref, margin)
        assert verdict == "yes"
