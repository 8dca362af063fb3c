import json
from dataclasses import asdict

import pytest

from train.config import ConfigError, apply_overrides, from_dict, parse_value
from train.models.systems import HGAAGSSMConfig
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
    assert cfg.model == HGAAGSSMConfig(pool="flat", hidden=64) and cfg.model.name == "hga_agssm"
    assert cfg.to_dict()["model"] == {
        "name": "hga_agssm",
        **asdict(HGAAGSSMConfig(pool="flat", hidden=64)),
    }
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
    assert resolved["+FM"].model.name == resolved["baseline"].model.name == "frame_mlp"
    assert set(resolved["+FM"].data.features.values()) == {"visual/dinov2/cls", "audio/wavlm"}
    # plain BCE up to +AG-SSM; "weighted BCE" is +AG-SSM with automatic positive weights
    for row in ("baseline", "+FM", "+HGA", "+AG-SSM"):
        assert resolved[row].imbalance.pos_weight == "none", row
    weighted, agssm = resolved["weighted BCE"], resolved["+AG-SSM"]
    assert weighted.imbalance.pos_weight == "auto" and weighted.model == agssm.model
    assert weighted.loss == agssm.loss and agssm.loss.name == "bce"
    assert resolved["+ASL"].to_dict() == {**resolve("abaw10").to_dict(), "recipe": ""}


# -- typed model and loss configs ------------------------------------------------------------


def _error(sets: list[str], recipe: str = "abaw10") -> str:
    with pytest.raises(ConfigError) as info:
        resolve(recipe, sets)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_unknown_model_or_loss_key_lists_that_configs_fields():
    message = _error(["model.d_modle=16"])
    assert message.startswith("unknown config key 'model.d_modle'; did you mean 'model.d_model'?")
    assert "known in model hga_agssm:" in message and "d_state" in message
    message = _error(["loss.gamma_ne=2"])
    assert "did you mean 'loss.gamma_neg'?" in message and "known in loss asl:" in message
    assert "unknown config key 'loss.gamma_neg'" in _error(["loss.gamma_neg=2"], "baseline")
    assert "did you mean 'frame_mlp'" in _error(["model.name=fram_mlp"])


def test_wrong_types_are_named_with_the_expected_type():
    assert _error(["model.d_model=big"]) == (
        "model.d_model expects an integer, got 'big' (e.g. model.d_model=128)"
    )
    assert _error(["loss.gamma_neg=x"]).startswith("loss.gamma_neg expects a number, got 'x'")
    assert "expects true/false" in _error(["model.causal=1"])
    assert "expects an integer, got 2.5" in _error(["model.n_layers=2.5"])
    assert "one of ['mean', 'flat']" in _error(["model.pool=flatt"])
    assert "a list of integers" in _error(["model.windows=[4, 'x']", "folds.k=0"], "abaw8")
    with pytest.raises(ConfigError, match="loss.pos_weight expects a list of numbers or null"):
        from_dict({"loss": {"name": "bce", "pos_weight": "auto"}})
    cfg = resolve("abaw8", ["model.windows=[4, 8]", "model.local=null", "model.kernel=5.0"])
    assert cfg.model.windows == (4, 8) and cfg.model.local is None and cfg.model.kernel == 5
    assert isinstance(cfg.model.kernel, int)
    assert resolve("abaw10", ["loss.gamma_neg=2"]).loss.gamma_neg == 2.0


def test_a_new_model_name_starts_from_that_models_defaults():
    cfg = resolve("abaw8", ["model.name=hga_mlp", "model.d_model=16"])
    assert cfg.model.name == "hga_mlp" and cfg.model.hidden == 512  # abaw8's hidden 512 not kept
    assert cfg.model.d_model == 16 and cfg.model.pool == "mean"
    cfg = resolve("abaw10", ["model.hidden=64", "model.name=frame_mlp"])  # order does not matter
    assert cfg.model.to_dict() == {
        "name": "frame_mlp",
        "hidden": 64,
        "dropout": 0.1,
        "use_audio": False,
        "extra": (),
    }
    message = _error(["model.name=frame_mlp", "model.pool=flat"])
    assert "unknown config key 'model.pool'" in message and "model.name=frame_mlp" in message
    same = resolve("abaw10", ["model.name=hga_agssm"])  # the recipe's own name: nothing changes
    assert same.model.pool == "flat"
    assert resolve("abaw10", ["loss.name=focal"]).loss.to_dict() == {
        "name": "focal",
        "gamma": 2.0,
        "alpha": None,
    }


def test_override_reaches_only_rows_whose_config_has_the_field():
    from train.ablate import row_overrides

    rows = dict(ABLATIONS["abaw10"])
    sets = ["model.d_model=16", "loss.gamma_neg=2", "loss.pos_weight=null", "optim.epochs=1"]
    reached = {row: row_overrides(spec, sets, row) for row, spec in rows.items()}
    assert reached["baseline"] == reached["+FM"] == ["loss.pos_weight=null", "optim.epochs=1"]
    assert reached["+HGA"] == reached["+AG-SSM"] == [sets[0], sets[2], sets[3]]
    assert reached["+ASL"] == [sets[0], sets[1], sets[3]]
    # a field no registered config has is refused for every row
    with pytest.raises(ConfigError, match="did you mean 'model.d_model'"):
        row_overrides(rows["baseline"], ["model.d_modle=16"], "baseline")
    # a --set model.name decides for every row
    switched = ["model.name=hga_mlp", "model.heads=2"]
    assert row_overrides(rows["baseline"], switched, "baseline") == switched
    for row, spec in rows.items():
        resolve(None, reached[row], recipe=spec)  # every row loads with what reaches it


def test_config_json_written_before_typed_configs_still_loads(tmp_path):
    """A run directory from when model and loss were free dicts: only the recipe's keys."""
    from train.loop import CONFIG_FILE, LAST, _check_resume_config

    old = resolve("abaw10").to_dict()
    old["model"] = {"name": "hga_agssm", "pool": "flat"}
    old["loss"] = {"name": "asl"}
    (tmp_path / CONFIG_FILE).write_text(json.dumps(old, indent=2, sort_keys=True))
    (tmp_path / LAST).write_bytes(b"")
    from train.config import load_config

    cfg = load_config(tmp_path / CONFIG_FILE)
    assert cfg == resolve("abaw10") and cfg.model.d_model == 128 and cfg.loss.gamma_neg == 4.0
    assert _check_resume_config(tmp_path, resolve("abaw10"))  # same run: resumes
    with pytest.raises(Exception, match="model.d_model"):
        _check_resume_config(tmp_path, resolve("abaw10", ["model.d_model=64"]))


def test_every_registered_config_round_trips():
    from dataclasses import fields

    from train.config import spec_classes, spec_from_dict

    for section in ("model", "loss"):
        classes = spec_classes(section)
        assert classes, section
        for name, cls in classes.items():
            cfg = cls()
            assert cfg.name == name
            on_disk = json.loads(json.dumps(cfg.to_dict()))
            assert on_disk["name"] == name and set(on_disk) == {"name"} | {
                f.name for f in fields(cls)
            }
            assert spec_from_dict(section, on_disk) == cfg
            full = resolve("baseline", [f"{section}.name={name}"])
            assert from_dict(json.loads(json.dumps(full.to_dict()))) == full


def test_recipes_print_every_field_and_fields_lists_them():
    from train.recipes import describe_fields

    model = json.loads(describe("abaw10"))["model"]
    assert model["pool"] == "flat" and model["d_state"] == 16 and model["scan_impl"] == "auto"
    text = describe_fields("fusion_tcn")
    assert "model.windows = [8, 16, 32]  (a list of integers)" in text
    assert "loss.gamma_neg = 4.0  (a number)" in describe_fields("asl")
    with pytest.raises(KeyError, match="did you mean 'hga_agssm'"):
        describe_fields("hga_agsm")


def test_a_model_set_by_hand_as_a_dict_is_typed_at_validate():
    cfg = resolve("baseline")
    cfg.model = {"name": "hga_mlp", "heads": 2}
    assert cfg.validate().model.heads == 2 and cfg.model.name == "hga_mlp"
    cfg.model.heads = "two"
    with pytest.raises(ConfigError, match="model.heads expects an integer"):
        cfg.validate()
