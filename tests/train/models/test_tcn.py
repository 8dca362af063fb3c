"""The TCN's receptive field equals its formula; a causal TCN never reads the future."""

from __future__ import annotations

import pytest
import torch

from train.models.tcn import TCN, receptive_field


def _influence(tcn: TCN, t: int, at: int) -> torch.Tensor:
    """(T,) bool: outputs that change when input frame `at` changes (the plain reference)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, t, 6, generator=g, dtype=torch.float64)
    y = x.clone()
    y[:, at] += torch.randn(6, generator=g, dtype=torch.float64) * 3
    with torch.no_grad():
        return (tcn(x) - tcn(y)).abs().amax(-1)[0] > 1e-9


@pytest.mark.parametrize("kernel,depth", [(3, 1), (3, 2), (3, 3), (2, 3), (5, 2)])
@pytest.mark.parametrize("causal", [True, False])
def test_receptive_field_equals_formula(kernel, depth, causal):
    torch.manual_seed(0)
    tcn = TCN(6, [32] * depth, kernel, causal, dropout=0.0).double().eval()
    r = receptive_field(kernel, depth)
    assert tcn.receptive_field == r == 1 + 2 * (kernel - 1) * (2**depth - 1)
    t, at = 2 * r + 10, r + 4
    changed = _influence(tcn, t, at).nonzero().flatten()
    # Frame `at` reaches exactly R outputs, contiguous: one output sees R inputs.
    assert len(changed) == r and changed[-1] - changed[0] == r - 1
    if causal:
        assert changed[0] == at  # nothing before the changed frame moves
    else:
        assert changed[0] < at < changed[-1]


def test_causal_outputs_do_not_depend_on_the_future():
    torch.manual_seed(0)
    tcn = TCN(6, [16, 16, 16], 3, causal=True, dropout=0.0).eval()
    x = torch.randn(2, 40, 6)
    y = x.clone()
    y[:, 25:] = torch.randn(2, 15, 6) * 10
    with torch.no_grad():
        a, b = tcn(x), tcn(y)
    torch.testing.assert_close(a[:, :25], b[:, :25])
    assert (a[:, 25:] - b[:, 25:]).abs().max() > 1e-3


def test_abaw8_default_field_is_about_one_second():
    from train.models import build_model

    dims = {"cls": 8, "audio": 4, "n_aus": 12}
    model = build_model({"name": "fusion_tcn", "d_model": 8, "heads": 2}, dims)
    assert model.tcn.causal
    assert model.tcn.receptive_field == 29  # 0.97 s at 30 fps
