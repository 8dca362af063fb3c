"""Encoder registries: one name -> one factory, for visual and audio encoders alike.

Factories are registered by their own modules (`dinov2.py`, `wavlm.py`, ...) and
imported only when an encoder is loaded, so importing `extract` stays light.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

VISUAL_ENCODERS: dict[str, Callable[..., Any]] = {}
AUDIO_ENCODERS: dict[str, Callable[..., Any]] = {}

# encoder name -> module that registers it
_VISUAL_MODULES = {
    "dinov2": "extract.encoders.dinov2",
    "convnext": "extract.encoders.convnext",
    "classical": "extract.encoders.classical",
}
# defined by their code alone (no model source); their module has `definition_fields()`
VISUAL_WITHOUT_SOURCE = frozenset({"classical"})
_AUDIO_MODULES = {
    "wavlm": "extract.encoders.wavlm",
    "whisper": "extract.encoders.whisper",
    "logmel": "extract.encoders.logmel",
}
# computed from the audio alone: no model source, no layers to pick
AUDIO_WITHOUT_SOURCE = frozenset({"logmel"})


def register_visual_encoder(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def wrap(factory: Callable[..., Any]) -> Callable[..., Any]:
        VISUAL_ENCODERS[name] = factory
        return factory

    return wrap


def register_audio_encoder(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def wrap(factory: Callable[..., Any]) -> Callable[..., Any]:
        AUDIO_ENCODERS[name] = factory
        return factory

    return wrap


def _resolve(kind: str, registry: dict, modules: dict[str, str], what: str) -> Callable[..., Any]:
    if kind not in registry:
        if kind not in modules:
            raise KeyError(f"unknown {what} encoder {kind!r}; known: {sorted(modules)}")
        importlib.import_module(modules[kind])
    return registry[kind]


def load_visual_encoder(kind: str, source: str | None, **kwargs: Any) -> Any:
    """Load visual encoder `kind` ("dinov2", "convnext") from a hub id or a local folder;
    "classical" takes no model source."""
    return _resolve(kind, VISUAL_ENCODERS, _VISUAL_MODULES, "visual")(source, **kwargs)


def load_audio_encoder(kind: str, source: str | None, **kwargs: Any) -> Any:
    """Load audio encoder `kind` ("wavlm", "whisper", "logmel"); logmel takes no model source."""
    return _resolve(kind, AUDIO_ENCODERS, _AUDIO_MODULES, "audio")(source, **kwargs)


def visual_definition_fields(kind: str) -> dict[str, Any]:
    """Fingerprint fields of a visual encoder without a model source, without building it."""
    return importlib.import_module(_VISUAL_MODULES[kind]).definition_fields()


def known_visual_encoders() -> list[str]:
    return sorted(_VISUAL_MODULES)


def known_audio_encoders() -> list[str]:
    return sorted(_AUDIO_MODULES)
