"""What an extraction run computes: encoders, landmarks, storage, device.

`ExtractConfig` is declared once: each field carries its command-line help (and, where the
values come from a registry, where to find them) in `field(metadata=...)`, and
`add_config_options` / `config_from_args` generate `auwild-extract run|bench`'s options from
the fields, so the dataclass, the parser and the copy between them cannot disagree.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from data_manifest.cli_options import add_device
from data_manifest.user_error import UserError, unknown_name


def _visual_names() -> list[str]:
    from extract.encoders.base import known_visual_encoders

    return known_visual_encoders()


def _audio_names() -> list[str]:
    from extract.encoders.base import known_audio_encoders

    return known_audio_encoders()


def _landmark_names() -> list[str]:
    from extract.faces.base import known_landmark_backends

    return known_landmark_backends()


def _detector_names() -> list[str]:
    from extract.faces.detectors import known_face_detectors

    return known_face_detectors()


def _landmark_spec(text: str) -> str:
    """`BACKEND[:DETECTOR]`, both names checked against their registries."""
    name, colon, detector = text.partition(":")
    if name not in _landmark_names():
        raise unknown_name("landmark backend", name, _landmark_names())
    if colon and detector not in _detector_names():
        raise unknown_name("face detector", detector, _detector_names())
    return text


def _token_kinds() -> list[str]:
    from extract.store.quantize import TOKEN_KINDS

    return list(TOKEN_KINDS)


def _sourceless() -> frozenset[str]:
    """Encoders with no model to load: logmel (from the audio alone), classical (from the crop)."""
    from extract.encoders.base import AUDIO_WITHOUT_SOURCE, VISUAL_WITHOUT_SOURCE

    return AUDIO_WITHOUT_SOURCE | VISUAL_WITHOUT_SOURCE


def _visual_list(text: str) -> dict[str, str | None]:
    # None stays None: an encoder without a model source (classical)
    return parse_encoder_list(text, known=_visual_names())


def _audio_list(text: str) -> dict[str, str | None]:
    return parse_encoder_list(text, known=_audio_names())


def _int_list(text: str) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UserError(
            f"--audio-layers takes comma-separated integers, e.g. 6,9,12 (got {text!r})"
        ) from None


def _opt(
    help: str,
    *,
    choices: Callable[[], list[str]] | tuple[str, ...] | None = None,
    parse: Callable[[str], Any] | None = None,
    metavar: str | None = None,
    shared: Callable[..., None] | None = None,
    check: Callable[[str], str] | None = None,
    names: Callable[[], list[str]] | None = None,
) -> dict[str, Any]:
    """Field metadata for the generated command line (see add_config_options).

    `choices`: the allowed values (or a registry lookup); `parse`: text -> field value after
    parsing; `check`: validates the text (raises UserError); `names`: registry names to list in
    the help; `shared`: the data_manifest.cli_options adder of an option every command shares.
    """
    return {
        "help": help,
        "choices": choices,
        "parse": parse,
        "metavar": metavar,
        "shared": shared,
        "check": check,
        "names": names,
    }


@dataclass
class ExtractConfig:
    visual: dict[str, str | None] = field(
        default_factory=dict,
        metadata=_opt(
            "visual encoders, name=HUB_ID_OR_FOLDER[,...] (classical takes no model)",
            choices=_visual_names, parse=_visual_list, metavar="NAME[=MODEL],...",
        ),
    )  # fmt: skip
    audio: dict[str, str | None] = field(
        default_factory=dict,
        metadata=_opt(
            "audio encoders, name=HUB_ID_OR_FOLDER[,...] (logmel takes no model)",
            choices=_audio_names, parse=_audio_list, metavar="NAME[=MODEL],...",
        ),
    )  # fmt: skip
    landmarks: str = field(
        default="template",
        metadata=_opt(
            "face and landmark backend, optionally :DETECTOR (e.g. template:s3fd on a GPU; "
            "template on full frames: hog)",
            check=_landmark_spec,
            names=lambda: [
                "backends " + ", ".join(_landmark_names()),
                "detectors " + ", ".join(_detector_names()),
            ],
            metavar="BACKEND[:DETECTOR]",
        ),
    )
    device: str = field(
        default="auto",
        metadata=_opt("torch device for landmarks and encoders", shared=add_device),
    )
    batch_size: int = field(
        default=32, metadata=_opt("frames per encoder batch (halved on GPU out-of-memory)")
    )
    crop_size: int = field(
        default=224, metadata=_opt("side in pixels of the aligned face crop the arrays refer to")
    )
    visual_input: str = field(
        default="auto",
        metadata=_opt(
            "auto: the frames folder when the manifest has one, else the video",
            choices=("auto", "frames", "video"),
        ),
    )
    detect_every: int = field(
        default=1, metadata=_opt("run the face detector every k frames, track in between")
    )
    visual_layer: int | None = field(
        default=None, metadata=_opt("hidden layer of the visual tokens (default: the last)")
    )
    audio_layers: tuple[int, ...] | None = field(
        default=None,
        metadata=_opt(
            "audio layers to average, e.g. 6,9,12 (default: the last)",
            parse=_int_list, metavar="L1,L2,...",
        ),
    )  # fmt: skip
    # patch tokens: int8 with a per-token scale, full grid: half of fp16's bytes, 99.9 % of its
    # F1 in the storage experiment, where pooled grids lost up to 2.7 % (bench/results/storage.md)
    token_dtype: str = field(
        default="int8",
        metadata=_opt("patch token storage (int8: one scale per token)", choices=_token_kinds),
    )
    patch_pool: int | None = field(
        default=None,
        metadata=_opt(
            "average-pool the patch grid to this side, e.g. 8 (a grid no larger is kept; "
            "0 or none: keep the full grid)"
        ),
    )
    local_views: int = field(
        default=4,
        metadata=_opt(
            "convnext: augmented local views per frame (random crop, flip, rotation); 0: none"
        ),
    )
    view_seed: int = field(
        default=0, metadata=_opt("seed of the local views (with the track id and frame index)")
    )
    default_fps: float = field(
        default=30.0, metadata=_opt("frame rate of frames folders that come without a video")
    )

    def __post_init__(self) -> None:
        from extract.device import resolve_device

        self.device = resolve_device(self.device)
        if not self.patch_pool:  # 0 and None both keep the full grid
            self.patch_pool = None

    def to_dict(self) -> dict:
        out = asdict(self)
        out["audio_layers"] = list(self.audio_layers) if self.audio_layers else None
        return out


def _choices(f: dataclasses.Field) -> list[str] | None:
    choices = f.metadata.get("choices")
    return list(choices()) if callable(choices) else (list(choices) if choices else None)


def _scalar_type(annotation: Any) -> type:
    """int | None -> int; str -> str (the parser's `type=`)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return _scalar_type(args[0])
    return annotation if annotation in (int, float, str) else str


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One `--field-name` per ExtractConfig field: its help, default, type and choices."""
    hints = typing.get_type_hints(ExtractConfig)
    for f in dataclasses.fields(ExtractConfig):
        meta = f.metadata
        if meta.get("shared"):
            meta["shared"](parser, meta["help"])
            continue
        kwargs: dict[str, Any] = {"dest": f.name, "help": meta["help"]}
        if meta.get("metavar"):
            kwargs["metavar"] = meta["metavar"]
        choices = _choices(f)
        if meta.get("names"):
            kwargs["help"] += "; " + "; ".join(meta["names"]())
        if meta.get("parse"):  # free text parsed after the command line (e.g. name=model lists)
            kwargs["default"] = ""
            if choices:
                kwargs["help"] += f"; names: {', '.join(choices)}"
        elif meta.get("check"):  # free text checked after the command line (one-line errors)
            kwargs["default"] = f.default
        else:
            kwargs["default"] = f.default
            kwargs["type"] = _scalar_type(hints[f.name])
            if choices:
                kwargs["choices"] = choices
        parser.add_argument("--" + f.name.replace("_", "-"), **kwargs)


def config_from_args(args: argparse.Namespace) -> ExtractConfig:
    """The ExtractConfig the options of add_config_options describe."""
    values = {}
    for f in dataclasses.fields(ExtractConfig):
        value = getattr(args, f.name)
        parse = f.metadata.get("parse") or f.metadata.get("check")
        values[f.name] = parse(value) if parse else value
    if not values["visual"] and not values["audio"]:
        raise UserError("nothing to extract: give --visual and/or --audio")
    return ExtractConfig(**values)


def parse_encoder_list(
    text: str | None, *, known: list[str] | None = None, needs_source: set[str] | None = None
) -> dict[str, str | None]:
    """Parse `name=source,name2=source2,name3` into {name: source or None}.

    A name not in `known` is a UserError with the closest known name; every known encoder but
    the sourceless ones (logmel, classical) needs a model (`needs_source` defaults to those).
    """
    out: dict[str, str | None] = {}
    if not text:
        return out
    if needs_source is None:
        needs_source = set(known or ()) - _sourceless()
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, _, source = item.partition("=")
        name = name.strip()
        if known is not None and name not in known:
            raise unknown_name("encoder", name, known)
        if name in needs_source and not source.strip():
            raise UserError(f"encoder {name!r} needs a model: write {name}=HUB_ID_OR_FOLDER")
        out[name] = source.strip() or None
    return out
