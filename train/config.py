"""The training configuration: typed defaults, then a recipe, then `--set key=value` overrides.

Every run writes its resolved configuration beside its outputs as `config.json`, so a run
directory alone says how it was made.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class DataConfig:
    # batch key -> store array path; the model reads only the keys it requires.
    features: dict[str, str] = field(default_factory=lambda: {"cls": "visual/dinov2/cls"})
    # store array with the per-frame face flag (False: no face image for that frame).
    face_valid: str = "face/valid"
    # store array with the per-frame audio flag, read when the model uses audio.
    audio_valid: str = "audio/valid"
    # training window length in frames.
    window: int = 32
    # step between training windows in frames (window == stride: no overlap).
    stride: int = 16
    # evaluation window length; whole tracks are covered by overlapping windows.
    eval_window: int = 64
    # step between evaluation windows; overlapping logits are averaged.
    eval_stride: int = 32
    # frames without a face: "mask" drops them from the loss, "keep" trains on them.
    faceless_train: str = "mask"
    # predictions for frames without a face: "nearest" copies the nearest frame with a face
    # (the earlier one on ties), "model" keeps the model's own output.
    faceless_predict: str = "nearest"
    # "ram": whole split in memory (float16), "gpu": in accelerator memory, "none": read windows
    # from the store in DataLoader workers.
    cache: str = "ram"
    # DataLoader worker processes for cache="none".
    workers: int = 0
    # pinned host memory for faster host-to-device copies (only used with a GPU).
    pin_memory: bool = True
    # split names in the manifest.
    train_split: str = "train"
    val_split: str = "val"
    # keep only the first N tracks of each split (0: all); for quick experiments.
    max_tracks: int = 0
    # "track": subtract each track's mean feature (over its frames with a face) from its visual
    # and audio features, removing identity and recording offsets (subject normalisation);
    # "none": features as stored.
    normalize: str = "none"


@dataclass
class OptimConfig:
    # AdamW learning rate (peak, after warm-up).
    lr: float = 1e-3
    # AdamW decoupled weight decay.
    weight_decay: float = 0.01
    # linear warm-up steps (a float < 1 is a fraction of all steps).
    warmup: float = 0.05
    # cosine decay floor as a fraction of lr.
    min_lr_ratio: float = 0.01
    # number of passes over the training windows.
    epochs: int = 10
    # cap on optimizer steps per epoch (0: one full pass).
    steps_per_epoch: int = 0
    # gradient norm clip (0: off).
    grad_clip: float = 1.0
    # windows per optimizer step (per process under DDP).
    batch_size: int = 16
    # seed of weights, shuffling, dropout and samplers.
    seed: int = 0
    # "auto": bf16 autocast on CUDA, fp32 on CPU; "bf16" or "fp32" to force.
    precision: str = "auto"
    # "auto" picks cuda when available, else cpu.
    device: str = "auto"


@dataclass
class ImbalanceConfig:
    # BCE positive weights: "auto" (negatives / positives per AU, clipped), "none", or 12 numbers.
    pos_weight: Any = "auto"
    # upper bound of automatic positive weights.
    max_pos_weight: float = 10.0
    # draw training windows with weights favouring windows rich in rare AUs.
    sampler: bool = False


@dataclass
class FoldsConfig:
    # number of video-grouped folds over train+val pooled (0: the manifest's train/val split).
    k: int = 0
    # how fold models are combined at prediction time: "vote" (hard majority) or "mean" (probability).
    combine: str = "vote"
    # seed of the fold assignment.
    seed: int = 0


@dataclass
class TrainConfig:
    # recipe name the run started from ("" when built by hand).
    recipe: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    # model spec passed to train.models.build_model: {"name": ..., kwargs...}.
    model: dict[str, Any] = field(default_factory=lambda: {"name": "frame_mlp", "hidden": 256})
    # loss spec passed to train.losses.build_loss: {"name": "bce"|"asl"|"focal", kwargs...}.
    loss: dict[str, Any] = field(default_factory=lambda: {"name": "bce"})
    optim: OptimConfig = field(default_factory=OptimConfig)
    imbalance: ImbalanceConfig = field(default_factory=ImbalanceConfig)
    folds: FoldsConfig = field(default_factory=FoldsConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")


class ConfigError(ValueError):
    """A configuration key or value that does not fit the schema."""


def from_dict(data: dict[str, Any]) -> TrainConfig:
    """Build a TrainConfig from a (possibly partial) nested dict, rejecting unknown keys."""
    return _merge(TrainConfig(), data, "")


def load_config(path: str | Path) -> TrainConfig:
    return from_dict(json.loads(Path(path).read_text()))


def _merge(obj: Any, data: dict[str, Any], prefix: str) -> Any:
    if not dataclasses.is_dataclass(obj):
        raise ConfigError(f"{prefix.rstrip('.')} is not a section")
    fields = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in data.items():
        if key not in fields:
            raise _unknown_key(f"{prefix}{key}", prefix, fields)
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{prefix}{key} is a section; give a dict or dotted keys")
            _merge(current, value, f"{prefix}{key}.")
        elif isinstance(current, dict) and isinstance(value, dict):
            setattr(obj, key, dict(value))
        else:
            setattr(obj, key, value)
    return obj


def parse_value(text: str) -> Any:
    """JSON-ish: numbers, true/false/null, lists and dicts as JSON; anything else a string
    (so `none` stays the word, as in data.cache=none; `null` is the missing value)."""
    lowered = text.strip().lower()
    if lowered == "null":
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(config: TrainConfig, overrides: list[str]) -> TrainConfig:
    """Apply `key=value` strings with dotted keys, e.g. `optim.lr=3e-4`, `model.hidden=128`,
    `data.features.audio=audio/wavlm`. Keys inside the free-form dicts (model, loss,
    data.features) may be new; a value of `null` removes such a key."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value")
        key, raw = item.split("=", 1)
        set_dotted(config, key.strip(), parse_value(raw))
    return config


def set_dotted(config: TrainConfig, key: str, value: Any) -> None:
    parts = key.split(".")
    obj: Any = config
    for i, part in enumerate(parts[:-1]):
        if isinstance(obj, dict):
            obj = obj.setdefault(part, {})
        elif dataclasses.is_dataclass(obj) and hasattr(obj, part):
            obj = getattr(obj, part)
        else:
            known = (
                {f.name for f in dataclasses.fields(obj)} if dataclasses.is_dataclass(obj) else ()
            )
            prefix = ".".join(parts[:i]) + "." if i else ""
            raise _unknown_key(".".join(parts[: i + 1]), prefix, known)
    last = parts[-1]
    if isinstance(obj, dict):
        if value is None:
            obj.pop(last, None)
        else:
            obj[last] = value
        return
    known = {f.name for f in dataclasses.fields(obj)} if dataclasses.is_dataclass(obj) else set()
    if last not in known:
        raise _unknown_key(key, key[: len(key) - len(last)], known)
    current = getattr(obj, last)
    if dataclasses.is_dataclass(current):
        raise ConfigError(f"{key} is a section; set one of its keys (e.g. {key}.<name>=...)")
    if isinstance(current, bool) and not isinstance(value, bool):
        raise ConfigError(f"{key} expects true/false, got {value!r}")
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(current, int) and not isinstance(current, bool):
        if not is_number or (isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"{key} expects an integer, got {value!r} (e.g. {key}={current})")
        value = int(value)
    if isinstance(current, float):
        if not is_number:
            raise ConfigError(f"{key} expects a number, got {value!r} (e.g. {key}={current})")
        value = float(value)
    setattr(obj, last, value)


def _unknown_key(key: str, prefix: str, known) -> ConfigError:
    """`unknown config key 'optim.epoch'; did you mean 'optim.epochs'? known in optim: ...`"""
    from data_manifest.user_error import did_you_mean

    names = sorted(prefix + k for k in known)
    where = f" in {prefix.rstrip('.')}" if prefix else ""
    hint = did_you_mean(key, names) or ";"
    return ConfigError(
        f"unknown config key {key!r}{hint} known{where}: {', '.join(n[len(prefix) :] for n in names)}"
    )
