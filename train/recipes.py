"""Named recipes: partial configurations over the defaults, printable and overridable.

A recipe is a nested dict applied on top of `TrainConfig()` defaults; `--set key=value`
overrides come after it. Ablations are ordered lists of (row name, recipe dict) pairs.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from train.config import (
    SPEC_SECTIONS,
    TrainConfig,
    apply_overrides,
    from_dict,
    spec_classes,
    spec_fields,
)

_DINO_WAVLM = {
    "cls": "visual/dinov2/cls",
    "patch": "visual/dinov2/patch",
    "rois": "face/rois",
    "audio": "audio/wavlm",
}

# Shared by every recipe: subject normalisation (each track's mean feature removed) and a
# schedule long enough for heads trained from scratch on a few hours of video.
_DATA = {"normalize": "track"}
_OPTIM = {"epochs": 30, "weight_decay": 0.1}

# Representations without a foundation model: FHOG of the aligned crop and of each AU region,
# landmark geometry and log-mel audio (`auwild-extract run --visual classical --audio logmel`).
_CLASSICAL = {
    "cls": "visual/classical/cls",
    "geometry": "visual/classical/geometry",
    "regions": "visual/classical/regions",
    "audio": "audio/logmel",
}

RECIPES: dict[str, dict[str, Any]] = {
    # Frame-wise MLP on DINOv2 CLS features, no audio, no time context, BCE.
    "baseline": {
        "data": {"features": {"cls": "visual/dinov2/cls"}, **_DATA},
        "model": {"name": "frame_mlp", "hidden": 256, "dropout": 0.1, "use_audio": False},
        "loss": {"name": "bce"},
        "optim": dict(_OPTIM),
    },
    # The same frame-wise MLP without foundation models: crop FHOG + landmark geometry (OpenFace's
    # features), the FHOG of the 16 AU regions and log-mel audio, BCE. The ABAW10 ablation's
    # first row. On the proving ground the regions add 0.024 mean F1 (0.019 honest) and log-mel
    # 0.004 (AU25 +0.05) (bench/results/proving_ground_baseline.md).
    "classical": {
        "data": {"features": dict(_CLASSICAL), **_DATA},
        "model": {
            "name": "frame_mlp",
            "hidden": 256,
            "dropout": 0.1,
            "use_audio": True,
            "extra": ["geometry", "regions"],
        },
        "loss": {"name": "bce"},
        "optim": dict(_OPTIM),
    },
    # ABAW10 winner: DINOv2 patch tokens + CLS, WavLM audio, HGA, audio-guided SSM, ASL.
    "abaw10": {
        "data": {"features": dict(_DINO_WAVLM), "window": 64, "stride": 32, **_DATA},
        "model": {"name": "hga_agssm", "pool": "flat"},
        "loss": {"name": "asl"},
        "optim": dict(_OPTIM),
    },
    # ABAW8 entry: ConvNeXt + Whisper, multi-scale fusion, TCN, MLP 512, BCE, 6 folds, hard vote.
    "abaw8": {
        "data": {
            "features": {
                "cls": "visual/convnext/cls",
                "local": "visual/convnext/local",
                "audio": "audio/whisper",
            },
            "window": 64,
            "stride": 32,
            **_DATA,
        },
        "model": {"name": "fusion_tcn", "hidden": 512},
        "loss": {"name": "bce"},
        "optim": dict(_OPTIM),
        "folds": {"k": 6, "combine": "vote"},
    },
}


def _row(base: str, **changes: Any) -> dict[str, Any]:
    recipe = copy.deepcopy(RECIPES[base])
    for key, value in changes.items():
        recipe[key] = value
    return recipe


_ABAW8_MODEL = RECIPES["abaw8"]["model"]
_ABAW8_FRAME = {"fusion": "frame", "tcn_blocks": 0}

# Plain BCE: no positive weights, as the paper's rows before +ASL imply.
_PLAIN = {"pos_weight": "none"}
_AGSSM_BCE = {"model": {"name": "hga_agssm", "pool": "flat"}, "loss": {"name": "bce"}}

# The rows of the ABAW10 ablation table, in order: each adds one component. The baseline is the
# frame-wise MLP without foundation models (classical face and audio features), +FM the same MLP
# on DINOv2 CLS + WavLM, so the step measures the representations alone. Every row before +ASL
# trains with plain BCE. "weighted BCE" is +AG-SSM with automatic positive weights, the other
# imbalance remedy set beside ASL, reported as its own row.
ABLATIONS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "abaw10": [
        ("baseline", _row("classical", imbalance=dict(_PLAIN))),
        (
            "+FM",
            _row(
                "abaw10",
                model={"name": "frame_mlp", "hidden": 256, "dropout": 0.1, "use_audio": True},
                loss={"name": "bce"},
                data={
                    "features": {"cls": "visual/dinov2/cls", "audio": "audio/wavlm"},
                    **_DATA,
                },
                imbalance=dict(_PLAIN),
            ),
        ),
        (
            "+HGA",
            _row(
                "abaw10",
                model={"name": "hga_mlp", "use_audio": True, "pool": "flat"},
                loss={"name": "bce"},
                imbalance=dict(_PLAIN),
            ),
        ),
        ("+AG-SSM", _row("abaw10", **copy.deepcopy(_AGSSM_BCE), imbalance=dict(_PLAIN))),
        ("+ASL", _row("abaw10")),
        (
            "weighted BCE",
            _row("abaw10", **copy.deepcopy(_AGSSM_BCE), imbalance={"pos_weight": "auto"}),
        ),
    ],
    # The ABAW8 table, each row adding one part of the system to the one above it.
    "abaw8": [
        # ConvNeXt global view + Whisper, each frame fused alone, no TCN
        ("global", _row("abaw8", model={**_ABAW8_MODEL, **_ABAW8_FRAME, "local": None})),
        # + the augmented local views (one drawn per window in training, the mean of all at eval)
        ("+local", _row("abaw8", model={**_ABAW8_MODEL, **_ABAW8_FRAME})),
        # + multi-scale windowed fusion: context-dependent modality weights, cross-modal
        # attention, learned window choice
        ("+multi-scale", _row("abaw8", model={**_ABAW8_MODEL, "tcn_blocks": 0})),
        # + the TCN: the full abaw8 recipe
        ("+TCN", _row("abaw8")),
    ],
}


def recipe_dict(name: str) -> dict[str, Any]:
    if name not in RECIPES:
        raise KeyError(f"unknown recipe {name!r}; known: {sorted(RECIPES)}")
    return copy.deepcopy(RECIPES[name])


def resolve(
    name: str | None, overrides: list[str] | None = None, recipe: dict | None = None
) -> TrainConfig:
    """Defaults < recipe (by name, or an explicit dict) < `key=value` overrides."""
    data = copy.deepcopy(recipe) if recipe is not None else (recipe_dict(name) if name else {})
    config = from_dict(data)
    config.recipe = name or ""
    return apply_overrides(config, list(overrides or []))


def describe(name: str) -> str:
    """The fully resolved recipe as JSON, for `auwild-train recipes NAME` (the model and loss
    with every field of their configs, defaults included)."""
    return json.dumps(resolve(name).to_dict(), indent=2, sort_keys=True)


def describe_fields(name: str) -> str:
    """The fields of registered model or loss `name` (type and default), one per line, for
    `auwild-train recipes --fields NAME`; KeyError naming the known ones otherwise."""
    from data_manifest.user_error import did_you_mean

    for section in SPEC_SECTIONS:
        if name in spec_classes(section):
            lines = [f"{section} {name}:"]
            for key, kind, default, comment in spec_fields(section, name):
                shown = json.dumps(list(default) if isinstance(default, tuple) else default)
                lines.append(f"  {section}.{key} = {shown}  ({kind})")
                lines += [f"      {comment}"] if comment else []
            return "\n".join(lines)
    known = sorted(n for section in SPEC_SECTIONS for n in spec_classes(section))
    hint = did_you_mean(name, known) or ";"
    raise KeyError(f"unknown model or loss {name!r}{hint} known: {', '.join(known)}")
