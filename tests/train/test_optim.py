"""AdamW's parameter groups: which parameters decay, for every registered system."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.train.models.test_models import DIMS, TINY
from train.models import MODEL_REGISTRY, _import_all, build_model
from train.optim import load_optimizer_state, no_weight_decay, param_groups, split_decay

_import_all()

CASES = [(name, kw) for name in sorted(MODEL_REGISTRY) for kw in TINY.get(name, [{}])]
# Parameters that must never decay, by the last part of their name.
NEVER = {"A_log", "D", "bias", "in_proj_bias", "region_emb", "queries", "no_face", "no_audio"}


@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_every_parameter_in_exactly_one_group(name, kwargs):
    model = build_model({"name": name, **kwargs}, DIMS)
    groups = param_groups(model, 0.1)
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}

    decay, no_decay = split_decay(model)
    modules = dict(model.named_modules())
    for pname in no_decay:
        owner = modules[pname.rpartition(".")[0]]
        assert not (isinstance(owner, (nn.Linear, nn.Conv1d)) and pname.endswith("weight")), (
            f"{name}: {pname} is a matmul weight and should decay"
        )
    for pname in decay:
        leaf = pname.rpartition(".")[2]
        owner = modules[pname.rpartition(".")[0]]
        assert leaf not in NEVER, f"{name}: {pname} should not decay"
        assert not isinstance(owner, nn.LayerNorm), f"{name}: norm {pname} should not decay"
        assert dict(model.named_parameters())[pname].dim() >= 2
    if any(n.endswith("A_log") for n, _ in model.named_parameters()):
        assert {"A_log", "D"} <= {n.rpartition(".")[2] for n in no_decay}
    assert decay, f"{name}: nothing decays"


def test_decay_acts_only_on_the_decay_group():
    model = nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3), nn.Linear(3, 3))
    extra = nn.Parameter(torch.ones(3, 3))
    model.register_parameter("marked", extra)
    no_weight_decay(extra)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW(param_groups(model, 0.5), lr=0.1)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for n, p in model.named_parameters():
        if n in ("0.weight", "2.weight"):
            torch.testing.assert_close(p, before[n] * (1 - 0.1 * 0.5))
        else:
            torch.testing.assert_close(p, before[n], msg=n)


def test_grouped_optimizer_state_reloads():
    torch.manual_seed(0)
    model = build_model({"name": "hga_agssm", **TINY["hga_agssm"][0]}, DIMS)
    opt = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-3)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    opt.step()
    state = opt.state_dict()
    again = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-3)
    again.load_state_dict(state)
    assert [len(g["params"]) for g in again.param_groups] == [
        len(g["params"]) for g in opt.param_groups
    ]
    for p in model.parameters():
        torch.testing.assert_close(again.state[p]["exp_avg"], opt.state[p]["exp_avg"])


def test_single_group_state_from_before_the_groups_still_loads():
    torch.manual_seed(0)
    model = build_model({"name": "hga_agssm", **TINY["hga_agssm"][0]}, DIMS)
    old = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    old.step()
    saved = old.state_dict()
    new = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-3)
    load_optimizer_state(new, model, saved)
    assert [g["weight_decay"] for g in new.param_groups] == [0.1, 0.0]
    for p in model.parameters():
        for key in ("exp_avg", "exp_avg_sq", "step"):
            torch.testing.assert_close(new.state[p][key], old.state[p][key])
    other = build_model({"name": "hga_mlp", **TINY["hga_mlp"][0]}, DIMS)
    with pytest.raises(ValueError, match="parameter group"):
        load_optimizer_state(torch.optim.AdamW(param_groups(other, 0.1)), other, saved)
