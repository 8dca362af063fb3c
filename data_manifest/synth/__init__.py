"""A deterministic synthetic dataset in the Aff-Wild2 layout: demo data and proving ground."""

from data_manifest.synth.config import DEFAULT_AU_RATES, LongRangeConfig, SynthConfig
from data_manifest.synth.face_render import AU_REGIONS, render_face
from data_manifest.synth.generate import generate_synthetic, plan_videos

__all__ = [
    "AU_REGIONS",
    "DEFAULT_AU_RATES",
    "LongRangeConfig",
    "SynthConfig",
    "generate_synthetic",
    "plan_videos",
    "render_face",
]
