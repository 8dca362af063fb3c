import pickle
import random

import numpy as np
import pytest
import torch

from train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state


def test_round_trip_with_weights_only(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    meta = {"config": {"a": 1}, "thresholds": np.full(12, 0.3), "step": np.int64(5)}
    save_checkpoint(
        tmp_path / "last.pt",
        {"model": model.state_dict(), "optimizer": opt.state_dict(), "rng": rng_state()},
        meta,
    )
    state, got = load_checkpoint(tmp_path / "last.pt")
    assert got["thresholds"] == [0.3] * 12 and got["step"] == 5 and got["checkpoint_schema"] == 1
    assert torch.equal(state["model"]["weight"], model.weight.detach())
    assert (tmp_path / "last.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.json", "last.pt"]


class Evil:
    """Any class outside the weights_only allow-list."""


def test_weights_only_refuses_arbitrary_objects(tmp_path):
    torch.save({"meta_json": "{}", "x": Evil()}, tmp_path / "bad.pt")
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(tmp_path / "bad.pt")


def test_failed_write_keeps_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "best.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(2)}}, {"epoch": 1})
    real_save = torch.save

    def crash(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        f.write(b"partial")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"model": {"w": torch.zeros(2)}}, {"epoch": 2})
    monkeypatch.undo()
    state, meta = load_checkpoint(path)
    assert meta["epoch"] == 1 and torch.equal(state["model"]["w"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.json", "best.pt"]


def test_rng_states_restore(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    save_checkpoint(tmp_path / "c.pt", {"rng": rng_state()}, {})
    a = (torch.rand(3), np.random.rand(3), random.random())
    state, _ = load_checkpoint(tmp_path / "c.pt")
    set_rng_state(state["rng"])
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
