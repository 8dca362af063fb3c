import json

import torch

from tests.train.masked_bce import build_test_loss
from tests.train.store_factory import make_dataset
from train.checkpoint import load_checkpoint
from train.loop import fit
from train.recipes import resolve

SETTINGS = [
    "optim.epochs=2",
    "model.hidden=16",
    "model.dropout=0.3",
    "optim.batch_size=4",
    "data.window=12",
    "data.stride=6",
    "imbalance.sampler=true",
]


def test_resumed_run_ends_exactly_where_an_uninterrupted_one_does(tmp_path):
    store, manifest = make_dataset(tmp_path, n_train=2, n_val=1, n_test=0, frames=40)
    cfg = resolve("baseline", SETTINGS)
    kw = {"loss_factory": build_test_loss, "progress": False}
    full = fit(cfg, store, manifest, tmp_path / "full", **kw)
    first = fit(cfg, store, manifest, tmp_path / "cut", stop_after_epochs=1, **kw)
    assert first["epochs_done"] == 1 and first["step"] == full["step"] // 2
    again = fit(cfg, store, manifest, tmp_path / "cut", **kw)
    assert again["step"] == full["step"]
    for name in ("last.pt", "best.pt"):
        a, meta_a = load_checkpoint(tmp_path / "full" / name)
        b, meta_b = load_checkpoint(tmp_path / "cut" / name)
        for k in a["model"]:
            assert torch.equal(a["model"][k], b["model"][k]), (name, k)
        assert meta_a["epoch"] == meta_b["epoch"] and meta_a["thresholds"] == meta_b["thresholds"]

    def history(run):
        rows = [json.loads(x) for x in (tmp_path / run / "history.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    assert history("full") == history("cut")
    # a finished run asked again does nothing more
    assert fit(cfg, store, manifest, tmp_path / "cut", **kw)["step"] == full["step"]


def test_resume_refuses_a_store_whose_fingerprints_changed(tmp_path):
    """The remaining epochs must not train on other features than the first ones."""
    import pytest

    from data_manifest.user_error import UserError

    store_a, manifest_a = make_dataset(tmp_path / "a", n_train=2, n_val=1, n_test=0, frames=40)
    store_b, manifest_b = make_dataset(
        tmp_path / "b", n_train=2, n_val=1, n_test=0, frames=40, patch_kind="int8"
    )
    cfg = resolve("baseline", SETTINGS)
    kw = {"loss_factory": build_test_loss, "progress": False}
    fit(cfg, store_a, manifest_a, tmp_path / "cut", stop_after_epochs=1, **kw)
    with pytest.raises(UserError, match=r"visual/dinov2 \(tokens: checkpoint='fp16', store='int8'"):
        fit(cfg, store_b, manifest_b, tmp_path / "cut", **kw)
    # the same store still resumes
    assert fit(cfg, store_a, manifest_a, tmp_path / "cut", **kw)["epochs_done"] == 2
