import json

import pytest

from train.config import ConfigError, apply_overrides, from_dict, parse_value
from train.recipes import ABLATIONS, RECIPES, describe, resolve


def test_defaults_recipe_then_overrides():
    cfg = resolve(
        "abaw10",
        [
            "optim.lr=3e-4",
            "model.hidden=64",
            "data.features.audio=audio/x",
            "imbalance.pos_weight=none",
            "optim.epochs=3.0",
            "data.features.rois=null",
        ],
    )
    assert cfg.optim.lr == 3e-4 and cfg.optim.epochs == 3 and isinstance(cfg.optim.epochs, int)
    assert cfg.model == {"name": "hga_agssm", "pool": "flat", "hidden": 64}
    assert cfg.data.features["audio"] == "audio/x" and "rois" not in cfg.data.features
    assert cfg.imbalance.pos_weight == "none" and cfg.recipe == "abaw10"
    assert RECIPES["abaw10"]["model"] == {"name": "hga_agssm", "pool": "flat"}  # untouched


def test_bad_keys_are_named():
    with pytest.raises(ConfigError, match="optim.lrr"):
        resolve("baseline", ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="section"):
        resolve("baseline", ["optim=1"])
    with pytest.raises(ConfigError, match="true/false"):
        resolve("baseline", ["imbalance.sampler=3"])
    with pytest.raises(ConfigError):
        from_dict({"nope": 1})


def test_parse_value_and_round_trip(tmp_path):
    assert parse_value("[1, 2]") == [1, 2] and parse_value("abc") == "abc"
    assert parse_value("null") is None and parse_value("none") == "none"
    assert parse_value("True") is True and parse_value("1e-3") == 1e-3
    cfg = apply_overrides(resolve("abaw8"), ["folds.k=3"])
    cfg.save(tmp_path / "config.json")
    again = from_dict(json.loads((tmp_path / "config.json").read_text()))
    assert again == cfg and again.folds.combine == "vote"


def test_recipes_print_and_ablation_rows():
    for name in RECIPES:
        assert json.loads(describe(name))["recipe"] == name
    rows = [r for r, _ in ABLATIONS["abaw10"]]
    assert rows == ["baseline", "+FM", "+HGA", "+AG-SSM", "+ASL", "weighted BCE"]
    specs = dict(ABLATIONS["abaw10"])
    assert specs["+FM"]["model"]["use_audio"] and specs["+ASL"]["loss"]["name"] == "asl"
    assert specs["+AG-SSM"]["loss"]["name"] == "bce"
    resolved = {r: resolve(None, recipe=spec) for r, spec in ABLATIONS["abaw10"]}
    # the baseline reads no foundation model: classical face features and log-mel audio
    paths = set(resolved["baseline"].data.features.values())
    classical = {f"visual/classical/{k}" for k in ("cls", "geometry", "regions")}
    assert paths == classical | {"audio/logmel"}
    # +FM is the same frame-wise model on DINOv2 CLS and WavLM
    assert resolved["+FM"].model["name"] == resolved["baseline"].model["name"] == "frame_mlp"
    assert set(resolved["+FM"].data.features.values()) == {"visual/dinov2/cls", "audio/wavlm"}
    # plain BCE up to +AG-SSM; "weighted BCE" is +AG-SSM with automatic positive weights
    for row in ("baseline", "+FM", "+HGA", "+AG-SSM"):
        assert resolved[row].imbalance.pos_weight == "none", row
    weighted, agssm = resolved["weighted BCE"], resolved["+AG-SSM"]
    assert weighted.imbalance.pos_weight == "auto" and weighted.model == agssm.model
    assert weighted.loss == agssm.loss == {"name": "bce"}
    assert resolved["+ASL"].to_dict() == {**resolve("abaw10").to_dict(), "recipe": ""}
