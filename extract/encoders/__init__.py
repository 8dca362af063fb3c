"""Visual and audio encoders behind two registries (see `base.py`)."""

from extract.encoders.base import (
    AUDIO_ENCODERS,
    AUDIO_WITHOUT_SOURCE,
    VISUAL_ENCODERS,
    VISUAL_WITHOUT_SOURCE,
    known_audio_encoders,
    known_visual_encoders,
    load_audio_encoder,
    load_visual_encoder,
    register_audio_encoder,
    register_visual_encoder,
    visual_definition_fields,
)

__all__ = [
    "AUDIO_ENCODERS",
    "AUDIO_WITHOUT_SOURCE",
    "VISUAL_ENCODERS",
    "VISUAL_WITHOUT_SOURCE",
    "known_audio_encoders",
    "known_visual_encoders",
    "load_audio_encoder",
    "load_visual_encoder",
    "register_audio_encoder",
    "register_visual_encoder",
    "visual_definition_fields",
]
