"""What an extraction run computes: encoders, landmarks, storage, device. Parsed from the command line."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from data_manifest.cli_support import UserError


@dataclass
class ExtractConfig:
    visual: dict[str, str] = field(default_factory=dict)  # encoder -> hub id or local folder
    audio: dict[str, str | None] = field(default_factory=dict)  # encoder -> source (None: logmel)
    landmarks: str = "template"  # landmark backend: fan | mediapipe | template
    device: str = "auto"  # torch device for landmarks and encoders; resolved by extract.device
    batch_size: int = 32  # frames per encoder batch (halved on GPU out-of-memory)
    crop_size: int = 224  # canonical aligned crop the face arrays refer to
    visual_input: str = "auto"  # auto (frames folder when present) | frames | video
    detect_every: int = 1  # run the face detector every k frames, track in between
    visual_layer: int | None = None  # hidden layer for visual tokens; None = last
    audio_layers: tuple[int, ...] | None = None  # audio layers averaged; None = last
    # patch tokens: int8 with a per-token scale, full grid — half of fp16's bytes, 99.9 % of its
    # F1 in the storage experiment, where pooled grids lost up to 2.7 % (bench/results/storage.md)
    token_dtype: str = "int8"  # fp16 | int8 (per-token scale)
    patch_pool: int | None = None  # average-pool a larger patch grid to this side (e.g. 8)
    default_fps: float = 30.0  # frame rate for frames folders without a video

    def __post_init__(self) -> None:
        from extract.device import resolve_device

        self.device = resolve_device(self.device)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["audio_layers"] = list(self.audio_layers) if self.audio_layers else None
        return out


def parse_encoder_list(text: str | None, *, needs_source: set[str]) -> dict[str, str | None]:
    """Parse `name=source,name2=source2,name3` into {name: source or None}."""
    out: dict[str, str | None] = {}
    if not text:
        return out
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, _, source = item.partition("=")
        name = name.strip()
        if name in needs_source and not source:
            raise UserError(f"encoder {name!r} needs a model: write {name}=HUB_ID_OR_FOLDER")
        out[name] = source.strip() or None
    return out
