"""The training configuration: typed defaults, then a recipe, then `--set key=value` overrides.

Every run writes its resolved configuration beside its outputs as `config.json`, so a run
directory alone says how it was made.

`model` and `loss` hold the typed config of a registered model or loss (train.models,
train.losses register each name with its config dataclass). On disk and in recipes they are
flat dicts `{"name": ..., field: value, ...}`; every key is checked against that name's config
fields at load, so a misspelt or mistyped `--set model.x=...` fails before any data is read.

Changing the name (`--set model.name=frame_mlp` over a recipe with another model) starts the new
model from its own defaults: the recipe's settings of the old model are dropped, and only the
`model.*` values given on the same command line carry over (an error when the new model has no
such field). Setting the name the recipe already has changes nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, Union, get_args, get_origin, get_type_hints


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
    # "track": subtract each track's mean feature from its features (visual over its frames with
    # a face, audio over its frames with audio), removing identity and recording offsets
    # (subject normalisation); "none": features as stored.
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
    # the model's typed config (train.models.MODEL_REGISTRY); {"name": ..., fields...} on disk.
    model: Any = field(default_factory=lambda: spec_from_dict("model", _DEFAULT_MODEL))
    # the loss's typed config (train.losses.LOSS_REGISTRY); {"name": ..., fields...} on disk.
    loss: Any = field(default_factory=lambda: spec_from_dict("loss", _DEFAULT_LOSS))
    optim: OptimConfig = field(default_factory=OptimConfig)
    imbalance: ImbalanceConfig = field(default_factory=ImbalanceConfig)
    folds: FoldsConfig = field(default_factory=FoldsConfig)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for section in SPEC_SECTIONS:
            out[section] = spec_to_dict(getattr(self, section))
        return out

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
        for section in SPEC_SECTIONS:
            value = getattr(self, section)
            if isinstance(value, dict):  # set by hand in code: type it as from_dict would
                value = spec_from_dict(section, value)
                setattr(self, section, value)
            check_spec(section, value)
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


# -- typed model and loss configs ----------------------------------------------------------------

# TrainConfig sections holding the typed config of a registered name: {"name": ..., fields...}
SPEC_SECTIONS = ("model", "loss")
_DEFAULT_MODEL = {"name": "frame_mlp", "hidden": 256}
_DEFAULT_LOSS = {"name": "bce"}


@dataclass
class SpecConfig:
    """Base of a registered model's or loss's config: one field per setting, each with a
    comment and its default. `name` is the registered name (set by the registry, not a field)."""

    name: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        return spec_to_dict(self)


def choice(default: Any, allowed: tuple) -> Any:
    """A field whose value must be one of `allowed` (checked at load like its type)."""
    return field(default=default, metadata={"choices": tuple(allowed)})


def set_spec_name(config_class: type, name: str) -> None:
    """Tie a config class to its registered name (one name per class)."""
    if config_class.__dict__.get("name", "") not in ("", name):
        raise ValueError(f"{config_class.__name__} is already registered as {config_class.name!r}")
    config_class.name = name


class SpecEntry(NamedTuple):
    """A registered model or loss: its class and the config class it is built from."""

    cls: type
    config: type


def registrar(registry: dict[str, SpecEntry], name: str, config: type) -> Callable[[type], type]:
    """The class decorator behind `register_model` and `register_loss`: ties `config` to `name`
    and records (class, config) in `registry`."""

    def wrap(cls: type) -> type:
        set_spec_name(config, name)
        registry[name] = SpecEntry(cls, config)
        return cls

    return wrap


def spec_classes(section: str) -> dict[str, type]:
    """Registered name -> config class for "model" or "loss"."""
    if section == "model":
        from train.models import model_configs

        return model_configs()
    from train.losses import loss_configs

    return loss_configs()


def spec_to_dict(spec: Any) -> dict[str, Any]:
    """A typed config as it is written: `{"name": ..., field: value, ...}`."""
    return {"name": spec.name, **dataclasses.asdict(spec)}


def spec_from_dict(section: str, data: Any, current: Any = None) -> Any:
    """`{"name": ..., field: value}` -> that name's typed config, the fields not given at their
    defaults. Without a name, `current`'s name. Unknown names, keys and mistyped values raise
    ConfigError naming the key."""
    if isinstance(data, SpecConfig):
        return data
    if isinstance(data, str):
        data = {"name": data}
    if not isinstance(data, dict):
        raise ConfigError(f"{section} must be a dict with a name, got {data!r}")
    classes = spec_classes(section)
    name = data.get("name", current.name if current is not None else None)
    if name not in classes:
        from data_manifest.user_error import did_you_mean

        hint = did_you_mean(str(name), classes) or ";"
        raise ConfigError(
            f"unknown {section} {name!r} ({section}.name){hint} known: {', '.join(sorted(classes))}"
        )
    spec = classes[name]()
    for key, value in data.items():
        if key != "name":
            set_spec_field(spec, section, key, value)
    return spec


def set_spec_field(spec: Any, section: str, key: str, value: Any) -> None:
    """Set one field of a typed config, checked against its annotated type and choices."""
    fields = {f.name: f for f in dataclasses.fields(spec)}
    if key not in fields:
        raise _unknown_key(
            f"{section}.{key}", f"{section}.", ["name", *fields], f"{section} {spec.name}"
        )
    setattr(spec, key, _typed(f"{section}.{key}", value, fields[key], type(spec)))


def check_spec(section: str, spec: Any) -> None:
    """Every field of a typed config has its type (values set in code are checked here)."""
    if not isinstance(spec, SpecConfig) or spec_classes(section).get(spec.name) is not type(spec):
        raise ConfigError(f"{section} must be a registered {section}'s config, got {spec!r}")
    for f in dataclasses.fields(spec):
        setattr(spec, f.name, _typed(f"{section}.{f.name}", getattr(spec, f.name), f, type(spec)))


def _typed(key: str, value: Any, f: dataclasses.Field, owner: type) -> Any:
    hint = _hints(owner)[f.name]
    typed = _as_type(value, hint)
    if typed is _WRONG:
        example = f.default if f.default is not dataclasses.MISSING else None
        example = json.dumps(list(example) if isinstance(example, tuple) else example)
        raise ConfigError(f"{key} expects {_type_name(hint)}, got {value!r} (e.g. {key}={example})")
    allowed = f.metadata.get("choices")
    if allowed is not None and typed not in allowed:
        from data_manifest.user_error import did_you_mean

        hint_text = did_you_mean(str(typed), [str(a) for a in allowed if a is not None])
        raise ConfigError(f"{key} must be one of {list(allowed)}, got {typed!r}{hint_text}")
    return typed


_WRONG = object()


@functools.cache
def _hints(owner: type) -> dict[str, Any]:
    return get_type_hints(owner)


def _is_union(hint: Any) -> bool:
    return get_origin(hint) is Union or type(hint).__name__ == "UnionType"


def _as_type(value: Any, hint: Any) -> Any:
    """`value` as type `hint` (ints widen to floats, integral floats narrow to ints, lists become
    tuples), or _WRONG."""
    if hint is Any:
        return value
    if _is_union(hint):
        if value is None and type(None) in get_args(hint):
            return None
        for arg in get_args(hint):
            if arg is not type(None) and (typed := _as_type(value, arg)) is not _WRONG:
                return typed
        return _WRONG
    origin = get_origin(hint)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return _WRONG
        item = get_args(hint)[0] if get_args(hint) else Any
        items = [_as_type(v, item) for v in value]
        return _WRONG if any(v is _WRONG for v in items) else origin(items)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is bool:
        return value if isinstance(value, bool) else _WRONG
    if hint is int:
        ok = number and (not isinstance(value, float) or value.is_integer())
        return int(value) if ok else _WRONG
    if hint is float:
        return float(value) if number else _WRONG
    if hint is str:
        return value if isinstance(value, str) else _WRONG
    return value if isinstance(value, hint) else _WRONG


def _type_name(hint: Any) -> str:
    if _is_union(hint):
        names = [_type_name(a) for a in get_args(hint) if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in get_args(hint) else "")
    if get_origin(hint) in (list, tuple):
        item = get_args(hint)[0] if get_args(hint) else Any
        return "a list of " + {int: "integers", float: "numbers", str: "strings"}.get(
            item, "values"
        )
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(
        hint, getattr(hint, "__name__", str(hint))
    )


def spec_fields(section: str, name: str) -> list[tuple[str, str, Any, str]]:
    """(field, type, default, comment) of a registered model's or loss's config, for
    `recipes --fields`; the comment is the `# ...` block above the field in its class."""
    classes = spec_classes(section)
    if name not in classes:
        spec_from_dict(section, {"name": name})  # raises the did-you-mean error
    cls = classes[name]
    hints = get_type_hints(cls)
    comments = _field_comments(cls)
    out = []
    for f in dataclasses.fields(cls):
        kind = _type_name(hints[f.name])
        if "choices" in f.metadata:
            kind = "one of " + ", ".join(json.dumps(c) for c in f.metadata["choices"])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        out.append((f.name, kind, default, comments.get(f.name, "")))
    return out


def _field_comments(cls: type) -> dict[str, str]:
    """Field name -> the comment lines just above it, the most derived class's winning."""
    import inspect
    import re

    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            lines = inspect.getsource(klass).splitlines()
        except (OSError, TypeError):
            continue
        block: list[str] = []
        for line in lines:
            text = line.strip()
            if text.startswith("#"):
                block.append(text.lstrip("#").strip())
                continue
            match = re.match(r"(\w+)\s*:", text)
            if match and block:
                comments[match.group(1)] = " ".join(block)
            block = []
    return comments


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
        if not prefix and key in SPEC_SECTIONS:
            # the whole model (loss): its name (default: the current one) and the fields that
            # differ from that name's defaults, as recipes and config.json give it
            setattr(obj, key, spec_from_dict(key, value, current))
            continue
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
    `data.features.audio=audio/wavlm`. Keys inside the free-form dict data.features may be new
    (a value of `null` removes one); `model.*` and `loss.*` keys must be fields of the chosen
    model's (loss's) config (`null` only where a field allows it). A new `model.name` (or
    `loss.name`) is applied first and starts from that name's defaults, whatever its place on
    the command line; the other `model.*` items then apply to it (see the module docstring)."""
    items = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value")
        key, raw = item.split("=", 1)
        items.append((key.strip(), parse_value(raw)))
    switched = {}
    for section in SPEC_SECTIONS:
        names = [value for key, value in items if key == f"{section}.name"]
        if names and names[-1] != getattr(config, section).name:
            setattr(config, section, spec_from_dict(section, {"name": names[-1]}))
            switched[section] = names[-1]
    for key, value in items:
        section = key.split(".")[0]
        if section in SPEC_SECTIONS and key == f"{section}.name":
            continue  # applied above
        try:
            set_dotted(config, key, value)
        except ConfigError as exc:
            if section not in switched or not str(exc).startswith("unknown config key"):
                raise
            raise ConfigError(
                f"{exc} ({section}.name={switched[section]} starts from its own defaults; "
                f"only its fields can be set)"
            ) from exc
    return config.validate()


def set_dotted(config: TrainConfig, key: str, value: Any) -> None:
    parts = key.split(".")
    if parts[0] in SPEC_SECTIONS:
        if len(parts) == 1:
            setattr(config, key, spec_from_dict(key, value, getattr(config, key)))
        elif len(parts) == 2 and parts[1] == "name":
            setattr(config, key, spec_from_dict(parts[0], {"name": value}))
        elif len(parts) == 2:
            set_spec_field(getattr(config, parts[0]), parts[0], parts[1], value)
        else:
            raise ConfigError(f"{key}: {parts[0]}.{parts[1]} is a setting, not a section")
        return
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


def _unknown_key(key: str, prefix: str, known, label: str | None = None) -> ConfigError:
    """`unknown config key 'optim.epoch'; did you mean 'optim.epochs'? known in optim: ...`"""
    from data_manifest.user_error import did_you_mean

    names = sorted(prefix + k for k in known)
    where = f" in {label or prefix.rstrip('.')}" if prefix else ""
    hint = did_you_mean(key, names) or ";"
    return ConfigError(
        f"unknown config key {key!r}{hint} known{where}: {', '.join(n[len(prefix) :] for n in names)}"
    )
