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
    # evaluation window length; whole tracks are covered by overlapping windows (0: each track
    # in one pass, for sequence models whose memory is linear in length).
    eval_window: int = 64
    # step between evaluation windows; overlapping logits are averaged.
    eval_stride: int = 32
    # frames without a face: "mask" drops them from the loss, "keep" trains on them.
    faceless_train: str = "mask"
    # predictions for frames without a face: "nearest" copies the nearest frame with a face
    # (the earlier one on ties), "model" keeps the model's own output.
    faceless_predict: str = "nearest"
    # where training frames come from: "gpu" (the split in accelerator memory, int8 tokens kept
    # int8), "ram" (the split in host memory), "stream" (windows read from the store per batch;
    # "none" is an older name); "auto": gpu when on CUDA and it fits, else ram when it fits,
    # else stream. A cache that does not fit is never used (the run says why and streams).
    cache: str = "auto"
    # DataLoader worker processes reading the store when streaming (0: one background thread).
    workers: int = 0
    # batches prepared ahead of the step (0: none, the plain synchronous loader).
    prefetch: int = 2
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
    # frames per optimizer step (0: off); when set, batch_size = max(1, frames_per_step //
    # data.window), so longer windows train with smaller batches at the same cost per step.
    frames_per_step: int = 0
    # optimizer steps between loss read-outs (each read-out waits for the device).
    log_every: int = 50
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

    def validate(self) -> TrainConfig:
        """Refuse unknown choices and impossible numbers, naming the key and the allowed values
        (called at load, before any data is read)."""
        for key, allowed in CHOICES.items():
            value = get_dotted(self, key)
            if value not in allowed:
                raise ConfigError(f"{key} must be one of {list(allowed)}, got {value!r}")
        for key, low in MINIMUM.items():
            value = get_dotted(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low:
                raise ConfigError(f"{key} must be a number >= {low}, got {value!r}")
        pw = self.imbalance.pos_weight
        if not (pw in (None, "none", "auto", False) or isinstance(pw, (list, tuple))):
            raise ConfigError(f"imbalance.pos_weight must be auto, none or 12 numbers, got {pw!r}")
        if isinstance(pw, (list, tuple)) and len(pw) != 12:
            raise ConfigError(f"imbalance.pos_weight needs 12 numbers, got {len(pw)}")
        if not isinstance(self.data.features, dict) or not self.data.features:
            raise ConfigError("data.features must map batch keys to store array paths")
        if not isinstance(self.model, dict) or "name" not in self.model:
            raise ConfigError("model must be a dict with a name")
        if not isinstance(self.loss, dict) or "name" not in self.loss:
            raise ConfigError("loss must be a dict with a name")
        dev = self.optim.device
        if not isinstance(dev, str) or not (
            dev in ("auto", "cpu", "mps") or dev.startswith("cuda")
        ):
            raise ConfigError(f"optim.device must be auto, cpu, mps or cuda[:i], got {dev!r}")
        return self

    def batch_size(self) -> int:
        """Windows per optimizer step (optim.frames_per_step / data.window when set)."""
        if self.optim.frames_per_step:
            return max(1, self.optim.frames_per_step // self.data.window)
        return self.optim.batch_size

    def save(self, path: str | Path) -> None:
        from data_manifest.shared_files import write_text_atomic

        write_text_atomic(Path(path), json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")


class ConfigError(ValueError):
    """A configuration key or value that does not fit the schema."""


# options with a fixed set of values (checked by TrainConfig.validate)
CHOICES: dict[str, tuple] = {
    "data.faceless_train": ("mask", "keep"),
    "data.faceless_predict": ("nearest", "model"),
    "data.cache": ("auto", "gpu", "ram", "stream", "none"),
    "data.normalize": ("none", "track"),
    "optim.precision": ("auto", "bf16", "fp32"),
    "folds.combine": ("vote", "mean"),
    "imbalance.sampler": (True, False),
    "data.pin_memory": (True, False),
}
# numeric options and their least value
MINIMUM: dict[str, float] = {
    "data.window": 1,
    "data.stride": 1,
    "data.eval_window": 0,
    "data.eval_stride": 1,
    "data.workers": 0,
    "data.prefetch": 0,
    "data.max_tracks": 0,
    "optim.lr": 0,
    "optim.weight_decay": 0,
    "optim.warmup": 0,
    "optim.min_lr_ratio": 0,
    "optim.epochs": 0,
    "optim.steps_per_epoch": 0,
    "optim.grad_clip": 0,
    "optim.batch_size": 1,
    "optim.frames_per_step": 0,
    "optim.log_every": 1,
    "imbalance.max_pos_weight": 1,
    "folds.k": 0,
}


def get_dotted(config: TrainConfig, key: str) -> Any:
    obj: Any = config
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def from_dict(data: dict[str, Any]) -> TrainConfig:
    """Build a TrainConfig from a (possibly partial) nested dict, rejecting unknown keys and
    values (see TrainConfig.validate)."""
    return _merge(TrainConfig(), data, "").validate()


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
    return config.validate()


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
